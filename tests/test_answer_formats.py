import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sam2_finetune.answer_formats import (
    ANSWER_FORMATS,
    AnswerObject,
    ParsedAnswer,
    check_labels,
    format_grid,
    parse_answer,
    qwen_smart_resize,
    render_answer,
)
from sam2_finetune.errors import OptionsError, Sam2FinetuneError

FORMATS = list(ANSWER_FORMATS)
POLYGON_FORMATS = [name for name, spec in ANSWER_FORMATS.items() if spec.supports_polygons]
NAMED_LABELS = ["car", "traffic light", 'say "hi"', "café ☕", "O'Brien", "日本語", "a,b", "x\\y"]


def _resized(fmt, image_wh):
    if not ANSWER_FORMATS[fmt].needs_resized_wh:
        return None
    h, w = qwen_smart_resize(image_wh[1], image_wh[0]) if _aspect_ok(image_wh) else (28, 28)
    return (w, h)


def _aspect_ok(wh):
    return max(wh) / min(wh) <= 200


def _writable(label, fmt):
    try:
        check_labels([label], fmt)
    except OptionsError:
        return False
    return True


sizes = st.one_of(
    st.sampled_from([(1, 1), (7, 1013), (1013, 7), (1, 4000), (640, 480), (1920, 1080)]),
    st.tuples(st.integers(1, 5000), st.integers(1, 5000)),
)
labels = st.one_of(
    st.sampled_from(NAMED_LABELS),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12),
)


def _coordinate(size):
    return st.one_of(st.just(0.0), st.just(float(size)), st.floats(0, size, allow_nan=False))


@st.composite
def scenes(draw, fmt, with_polygons=False):
    """(image_wh, resized_wh, objects) with labels the format can write and edge-touching
    boxes among them."""
    image_wh = draw(sizes)
    if ANSWER_FORMATS[fmt].needs_resized_wh:
        resized_wh = draw(
            st.one_of(
                st.just(_resized(fmt, image_wh)),
                st.tuples(st.integers(1, 3000), st.integers(1, 3000)),
            )
        )
    else:
        resized_wh = None
    w, h = image_wh
    objects = []
    for _ in range(draw(st.integers(0, 3 if with_polygons else 6))):
        label = draw(labels.filter(lambda s, f=fmt: _writable(s, f)))
        x1, x2 = sorted([draw(_coordinate(w)), draw(_coordinate(w))])
        y1, y2 = sorted([draw(_coordinate(h)), draw(_coordinate(h))])
        polygons = None
        if with_polygons:
            polygons = [
                [
                    (draw(_coordinate(w)), draw(_coordinate(h)))
                    for _ in range(draw(st.integers(3, 6)))
                ]
                for _ in range(draw(st.integers(1, 2)))
            ]
        objects.append(AnswerObject(label, (x1, y1, x2 - x1, y2 - y1), polygons))
    return image_wh, resized_wh, objects


def _assert_close(found, expected, step, what):
    # Rounding (and Florence-2's floor + bin centre) is off by half a step at most: stricter than
    # the "one step" promised, so an off-by-one in a scale or a bin fails here.
    assert abs(found - expected) <= 0.5 * step * (1 + 1e-9) + 1e-9, (what, found, expected, step)


def _assert_boxes_back(parsed, objects, grid):
    sx, sy = grid.step
    assert [o.label for o in parsed] == [o.label for o in objects]
    for got, want in zip(parsed, objects, strict=True):
        for axis, g, w in zip("xyxy", got.xyxy, want.xyxy, strict=True):
            _assert_close(g, w, sx if axis == "x" else sy, (got, want))


@pytest.mark.parametrize("fmt", FORMATS)
def test_box_round_trip_within_half_a_quantisation_step(fmt):
    @settings(max_examples=60, deadline=None)
    @given(scenes(fmt))
    @example(((1, 1), (28, 28), [AnswerObject("car", (0.0, 0.0, 1.0, 1.0))]))
    @example(((7, 1013), (28, 1008), [AnswerObject("car", (0.0, 1012.0, 7.0, 1.0))] * 2))
    def check(scene):
        image_wh, resized_wh, objects = scene
        if not ANSWER_FORMATS[fmt].needs_resized_wh:
            resized_wh = None
        text = render_answer(objects, fmt, image_wh, resized_wh=resized_wh, task="detect")
        parsed = parse_answer(text, fmt, image_wh, resized_wh=resized_wh)
        assert parsed.ok, (text, parsed.problems)
        assert parsed.count is None
        _assert_boxes_back(
            parsed.objects, objects, format_grid(fmt, image_wh, resized_wh=resized_wh)
        )

    check()


@pytest.mark.parametrize("fmt", POLYGON_FORMATS)
def test_polygon_round_trip_within_half_a_quantisation_step(fmt):
    @settings(max_examples=40, deadline=None)
    @given(scenes(fmt, with_polygons=True))
    def check(scene):
        image_wh, resized_wh, objects = scene
        text = render_answer(objects, fmt, image_wh, resized_wh=resized_wh, task="segment")
        parsed = parse_answer(text, fmt, image_wh, resized_wh=resized_wh)
        assert parsed.ok, (text, parsed.problems)
        sx, sy = format_grid(fmt, image_wh, resized_wh=resized_wh).step
        assert [o.label for o in parsed.objects] == [o.label for o in objects]
        for got, want in zip(parsed.objects, objects, strict=True):
            assert len(got.polygons) == len(want.polygons)
            for got_poly, want_poly in zip(got.polygons, want.polygons, strict=True):
                assert len(got_poly) == len(want_poly)
                for (gx, gy), (wx, wy) in zip(got_poly, want_poly, strict=True):
                    _assert_close(gx, wx, sx, text)
                    _assert_close(gy, wy, sy, text)

    check()


@pytest.mark.parametrize("fmt", FORMATS)
@given(n=st.integers(0, 10**6))
@settings(max_examples=30, deadline=None)
def test_count_round_trip(fmt, n):
    image_wh = (640, 480)
    resized_wh = _resized(fmt, image_wh)
    objects = [AnswerObject("car", (0, 0, 1, 1))] * min(n, 3)
    text = render_answer(objects, fmt, image_wh, resized_wh=resized_wh, task="count")
    assert parse_answer(text, fmt, image_wh, resized_wh=resized_wh).count == min(n, 3)
    parsed = parse_answer(str(n), fmt, image_wh, resized_wh=resized_wh)
    assert parsed == ParsedAnswer([], n, True, [])


EXPECTED = {
    "json": '[{"label": "car", "bbox_2d": [100, 100, 400, 300]}, '
    '{"label": "person", "bbox_2d": [0, 500, 1000, 1000]}]',
    "qwen2_vl": "<|object_ref_start|>car<|object_ref_end|><|box_start|>(100,100),(400,300)"
    "<|box_end|><|object_ref_start|>person<|object_ref_end|><|box_start|>(0,500),(1000,1000)"
    "<|box_end|>",
    "qwen2_5_vl": '```json\n[\n\t{"bbox_2d": [20, 40, 80, 120], "label": "car"},\n'
    '\t{"bbox_2d": [0, 200, 200, 400], "label": "person"}\n]\n```',
    "paligemma": "<loc0102><loc0102><loc0307><loc0409> car ; "
    "<loc0512><loc0000><loc1023><loc1023> person",
    "florence2": "car<loc_100><loc_100><loc_400><loc_300>person<loc_0><loc_500><loc_999><loc_999>",
    "internvl": "<ref>car</ref><box>[[100, 100, 400, 300]]</box>\n"
    "<ref>person</ref><box>[[0, 500, 1000, 1000]]</box>",
    "minicpm_v": "<ref>car</ref><box>100 100 400 300</box>\n"
    "<ref>person</ref><box>0 500 1000 1000</box>",
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_exact_text_of_each_format(fmt):
    objects = [AnswerObject("car", (10, 20, 30, 40)), AnswerObject("person", (0, 100, 100, 100))]
    text = render_answer(objects, fmt, (100, 200), resized_wh=(200, 400), task="ground")
    assert text == EXPECTED[fmt]


def test_same_label_objects_are_grouped_where_the_family_groups_them():
    objects = [AnswerObject("car", (0, 0, 10, 10)), AnswerObject("car", (10, 10, 10, 10))]
    assert render_answer(objects, "internvl", (100, 100)) == (
        "<ref>car</ref><box>[[0, 0, 100, 100], [100, 100, 200, 200]]</box>"
    )
    assert render_answer(objects, "florence2", (100, 100)) == (
        "car<loc_0><loc_0><loc_100><loc_100><loc_100><loc_100><loc_200><loc_200>"
    )
    assert render_answer(objects, "paligemma", (100, 100)).count(" car") == 2


def test_multi_part_polygons_in_json_and_florence():
    parts = [[(0, 0), (10, 0), (10, 10)], [(50, 50), (60, 50), (60, 60)]]
    obj = AnswerObject("cat", (0, 0, 60, 60), parts)
    text = render_answer([obj], "json", (100, 100), task="segment")
    assert '"polygon": [[[0, 0], [100, 0], [100, 100]], [[500, 500]' in text
    one = render_answer(
        [AnswerObject("cat", (0, 0, 10, 10), parts[:1])], "json", (100, 100), task="segment"
    )
    assert '"polygon": [[0, 0], [100, 0], [100, 100]]' in one
    text = render_answer([obj], "florence2", (100, 100), task="segment")
    assert text == (
        "cat<poly><loc_0><loc_0><loc_100><loc_0><loc_100><loc_100><sep>"
        "<loc_500><loc_500><loc_600><loc_500><loc_600><loc_600></poly>"
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_objects_is_the_empty_answer_and_parses_back(fmt):
    resized = _resized(fmt, (64, 48))
    text = render_answer([], fmt, (64, 48), resized_wh=resized, task="ground")
    assert text == ANSWER_FORMATS[fmt].empty_answer
    assert parse_answer(text, fmt, (64, 48), resized_wh=resized) == ParsedAnswer([], None, True, [])


# ------------------------------------------------------------------------ the parser never raises


def _fragments(fmt):
    text = EXPECTED[fmt]
    pieces = ["<poly>", "</poly>", "<sep>", "<loc_12>", "<loc0012>", "[[", "]]", "{", "}", '"', ","]
    return st.lists(
        st.one_of(
            st.sampled_from(pieces),
            st.integers(0, len(text)).map(lambda i: text[:i]),
            st.integers(0, len(text)).map(lambda i: text[i:]),
            st.text(max_size=8),
            st.integers(-(10**400), 10**400).map(str),
        ),
        max_size=8,
    ).map("".join)


@pytest.mark.parametrize("fmt", FORMATS)
def test_parser_never_raises_on_arbitrary_text(fmt):
    @settings(max_examples=150, deadline=None)
    @given(st.one_of(st.text(max_size=200), _fragments(fmt)))
    @example("NaN")
    @example('[{"label": "a", "bbox_2d": [NaN, 1, 2, 3]}]')
    @example('[{"label": "a", "bbox_2d": [1e999, 1, 2, 3]}]')
    @example("[" * 5000)
    @example('{"count": 99999999999999999999999}')
    def check(text):
        parsed = parse_answer(text, fmt, (33, 17), resized_wh=(56, 28))
        assert isinstance(parsed, ParsedAnswer)
        assert parsed.ok == (not parsed.problems)
        assert not any(p.startswith("parser error") for p in parsed.problems), parsed.problems
        for obj in parsed.objects:
            x, y, w, h = obj.bbox
            assert all(math.isfinite(v) for v in obj.bbox)
            assert 0 <= x <= x + w <= 33 + 1e-9 and 0 <= y <= y + h <= 17 + 1e-9

    check()


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_output_gives_the_complete_objects_and_a_flag(fmt):
    objects = [
        AnswerObject("car", (10, 20, 30, 40)),
        AnswerObject("person", (0, 100, 100, 100)),
        AnswerObject("car", (50, 50, 5, 5)),
    ]
    resized = (200, 400)
    text = render_answer(objects, fmt, (100, 200), resized_wh=resized)
    full = parse_answer(text, fmt, (100, 200), resized_wh=resized)
    assert full.ok and len(full.objects) == 3
    flagged = 0
    for cut in range(len(text)):
        parsed = parse_answer(text[:cut], fmt, (100, 200), resized_wh=resized)
        boxes = [o.bbox for o in parsed.objects]
        assert boxes == [o.bbox for o in full.objects[: len(boxes)]], text[:cut]
        if parsed.ok and fmt != "paligemma":  # PaliGemma's last label can be cut unnoticed
            assert parsed.objects == full.objects[: len(boxes)], text[:cut]
        flagged += not parsed.ok
    assert flagged > len(text) // 2


MALFORMED = [
    ("json", '[{"label": "car", "bbox_2d": [100, 100, 400, 300]}, {"label": "pe', 1, "not valid"),
    ("json", '[{"label": "car", "bbox_2d": [1200, 100, 400, 300]}]', 1, "outside"),
    ("json", '[{"label": "car", "bbox_2d": [400, 100, 100, 300]}]', 1, "wrong order"),
    ("json", '[{"label": "car", "bbox_2d": [1, 2, 3]}]', 0, "4 numbers"),
    ("json", '[{"label": "car"}, {"label": "b", "bbox_2d": [0, 0, 1, 1]}]', 1, "without"),
    ("json", '[{"label": "c", "polygon": [[0, 0], [10, 0]]}]', 0, "3 points"),
    (
        "qwen2_5_vl",
        '```json\n[\n\t{"bbox_2d": [2, 4, 8, 12], "label": "car"},\n\t{"bb',
        1,
        "not valid",
    ),
    ("qwen2_vl", "<|object_ref_start|>car<|object_ref_end|><|box_start|>(1,2),(3", 0, "unexpected"),
    ("qwen2_vl", "<|object_ref_start|>car<|object_ref_end|>", 0, "has no box"),
    ("internvl", "<ref>car</ref><box>[[1, 2, 3, 4]]</box> and also a dog", 1, "unexpected"),
    ("internvl", "<ref>car</ref><box>[[1, 2, 3]]</box>", 0, "4 numbers"),
    ("minicpm_v", "<ref>car</ref><box>1 2 3</box>", 0, "unreadable"),
    ("paligemma", "<loc0001><loc0002><loc0003> car", 0, "no <locYYYY>"),
    ("paligemma", "<loc0001><loc0002><loc0003><loc0004> car ; <loc0001><loc0", 1, "incomplete"),
    ("paligemma", "<loc0001><loc0002><loc0003><loc0004> car ;", 1, "truncated"),
    ("florence2", "car<loc_1><loc_2><loc_3>", 0, "incomplete box"),
    ("florence2", "car<loc_1><loc_2><loc_3><loc_4>dog", 1, "text without boxes"),
    ("florence2", "car<poly><loc_1><loc_2><loc_3><loc_4><loc_5><loc_6>", 1, "not closed"),
    ("florence2", "car<loc_1><loc_2><loc_3><loc_1000>", 1, "outside"),
]


@pytest.mark.parametrize(("fmt", "text", "n_objects", "problem"), MALFORMED)
def test_malformed_output_gives_partial_result_and_says_why(fmt, text, n_objects, problem):
    parsed = parse_answer(text, fmt, (100, 200), resized_wh=(28, 56))
    assert not parsed.ok
    assert len(parsed.objects) == n_objects
    assert any(problem in p for p in parsed.problems), parsed.problems


@pytest.mark.parametrize(
    ("text", "count"),
    [("3", 3), ("3.", 3), ('{"count": 7}', 7), ("three", 3), ("There are 12 cars.", 12)],
)
def test_counts_in_several_forms(text, count):
    for fmt in FORMATS:
        assert parse_answer(text, fmt, (10, 10), resized_wh=(28, 28)).count == count


def test_decoder_markers_and_none_are_understood():
    text = EXPECTED["qwen2_vl"] + "<|im_end|><|endoftext|>"
    assert parse_answer(text, "qwen2_vl", (100, 200)).ok
    for text in ("None", "none.", "", "  "):
        assert parse_answer(text, "minicpm_v", (10, 10)) == ParsedAnswer([], None, True, [])
    assert not parse_answer(None, "json", (10, 10)).ok  # type: ignore[arg-type]


def test_qwen2_box_without_label_and_json_without_fence_are_read():
    parsed = parse_answer("<|box_start|>(0,0),(500,500)<|box_end|>", "qwen2_vl", (10, 10))
    assert parsed.ok and parsed.objects == [AnswerObject("", (0.0, 0.0, 5.0, 5.0))]
    parsed = parse_answer(
        '[{"bbox_2d": [0, 0, 14, 14], "label": "a"}]', "qwen2_5_vl", (10, 10), resized_wh=(28, 28)
    )
    assert parsed.ok and parsed.objects == [AnswerObject("a", (0.0, 0.0, 5.0, 5.0))]


# ------------------------------------------------------------------------------- refusals


def test_qwen2_5_vl_needs_the_resized_size():
    with pytest.raises(OptionsError, match="qwen_smart_resize"):
        render_answer([AnswerObject("car", (0, 0, 1, 1))], "qwen2_5_vl", (100, 100))
    with pytest.raises(OptionsError, match="resized_wh"):
        parse_answer("[]", "qwen2_5_vl", (100, 100))


def test_caller_mistakes_are_options_errors():
    obj = AnswerObject("car", (0, 0, 1, 1))
    with pytest.raises(OptionsError, match="unknown answer format"):
        render_answer([obj], "yolo", (10, 10))
    with pytest.raises(OptionsError, match="unknown task"):
        render_answer([obj], "json", (10, 10), task="caption")
    with pytest.raises(OptionsError, match="no polygon syntax"):
        render_answer(
            [AnswerObject("car", (0, 0, 1, 1), [[(0, 0), (1, 0), (1, 1)]])],
            "paligemma",
            (10, 10),
            task="segment",
        )
    with pytest.raises(OptionsError, match="needs polygons"):
        render_answer([obj], "json", (10, 10), task="segment")
    with pytest.raises(OptionsError, match="negative size"):
        render_answer([AnswerObject("car", (5, 5, -1, 1))], "json", (10, 10))
    with pytest.raises(OptionsError, match="positive integers"):
        render_answer([obj], "json", (0, 10))
    assert issubclass(OptionsError, Sam2FinetuneError)


@pytest.mark.parametrize(
    ("fmt", "label"),
    [
        ("paligemma", "a;b"),
        ("florence2", "a<b"),
        ("internvl", "x</ref>"),
        ("qwen2_vl", "<|x"),
        ("minicpm_v", " car"),
        ("paligemma", ""),
    ],
)
def test_labels_a_format_cannot_write_are_refused_with_a_fix(fmt, label):
    with pytest.raises(OptionsError, match="--answer-format json"):
        render_answer([AnswerObject(label, (0, 0, 1, 1))], fmt, (10, 10))
    assert render_answer([AnswerObject(label, (0, 0, 1, 1))], "json", (10, 10))


# ------------------------------------------------------------------------------ smart_resize

KNOWN_RESIZES = {  # (height, width) -> transformers' smart_resize with its defaults
    (1080, 1920): (728, 1316),
    (240, 320): (252, 308),
    (10, 10): (56, 56),
    (1, 200): (28, 812),
    (4000, 3000): (1148, 840),
}


def test_refusals_without_an_expected_value_do_not_say_expected_none():
    with pytest.raises(OptionsError) as info:
        qwen_smart_resize(1000, 3)
    message = str(info.value)
    assert "aspect ratio above 200" in message and "(found (1000, 3))" in message
    assert "expected None" not in message


def test_qwen_smart_resize_known_values():
    for (h, w), expected in KNOWN_RESIZES.items():
        assert qwen_smart_resize(h, w) == expected
    with pytest.raises(OptionsError, match="aspect ratio"):
        qwen_smart_resize(1, 201)


@pytest.mark.slow
def test_qwen_smart_resize_matches_transformers():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    for h in (1, 7, 27, 28, 29, 100, 240, 719, 1080, 2160, 4001):
        for w in (1, 13, 56, 320, 1013, 1920, 3840):
            if max(h, w) / min(h, w) > 200:
                continue
            for kwargs in ({}, {"max_pixels": 12845056}, {"min_pixels": 256 * 28 * 28}):
                assert qwen_smart_resize(h, w, **kwargs) == smart_resize(h, w, **kwargs)
