"""draw_objects: truth solid, predictions dashed, a stable colour per class, a legend."""

from __future__ import annotations

import numpy as np
from PIL import Image

from sam2_finetune.answer_formats import AnswerObject
from sam2_finetune.evaluate.pictures import (
    PALETTE,
    UNKNOWN_COLOUR,
    class_colour,
    draw_objects,
    prediction_picture,
)
from sam2_finetune.metrics import GroundTruthObject

LABELS = ["car", "person"]


def pixels(picture):
    return np.asarray(picture)


def test_truth_is_solid_and_predictions_are_dashed_in_the_class_colour():
    image = Image.new("RGB", (200, 150), (0, 0, 0))
    truth = [GroundTruthObject("car", (20.0, 60.0, 60.0, 60.0))]
    predicted = [AnswerObject("person", (110.0, 40.0, 80.0, 80.0))]
    picture = draw_objects(image, predicted, truth, LABELS)
    assert picture.width == 200 and picture.height > 150  # the legend strip below
    array = pixels(picture)
    car, person = tuple(PALETTE[0]), tuple(PALETTE[1])
    # The true box's left edge is one unbroken line of the car's colour.
    edge = array[70:115, 20]
    assert all(tuple(p) == car for p in edge)
    # The predicted box's left edge is dashed: the person's colour, with gaps of the image.
    edge = [tuple(p) for p in array[60:115, 110]]
    assert person in edge and (0, 0, 0) in edge
    # Outside every box: the image, untouched.
    assert tuple(array[140, 100]) == (0, 0, 0)
    assert image.getpixel((20, 90)) == (0, 0, 0)  # the input is not drawn on


def test_colours_are_stable_and_unknown_labels_stand_out():
    assert class_colour("person", LABELS) == PALETTE[1]
    assert class_colour("person", ["a", "b", "person"]) == PALETTE[2]
    assert class_colour("bus", LABELS) == UNKNOWN_COLOUR
    picture = draw_objects(
        Image.new("RGB", (100, 80)), [AnswerObject("bus", (10.0, 10.0, 30.0, 30.0))], None, LABELS
    )
    colours = {tuple(p) for p in pixels(picture).reshape(-1, 3)}
    assert UNKNOWN_COLOUR in colours  # the box and its legend swatch


def test_polygons_are_drawn_instead_of_the_box():
    image = Image.new("RGB", (100, 100), (0, 0, 0))
    triangle = [[(10.0, 10.0), (90.0, 10.0), (50.0, 90.0)]]
    obj = AnswerObject("car", (10.0, 10.0, 80.0, 80.0), triangle)
    array = pixels(draw_objects(image, [obj], None, LABELS))
    # The box's bottom-right corner is not drawn: only the triangle's edges were.
    assert tuple(array[89, 89]) == (0, 0, 0)
    top = [tuple(p) for p in array[10, 10:90]]
    assert tuple(PALETTE[0]) in top


def test_an_image_without_objects_still_has_a_legend():
    picture = draw_objects(Image.new("RGB", (64, 48), (9, 9, 9)), [], [], LABELS)
    assert picture.size[0] == 64 and picture.size[1] > 48
    assert tuple(pixels(picture)[20, 20]) == (9, 9, 9)


def test_the_training_picture_moved_here_and_train_uses_it():
    from sam2_finetune.train import callbacks

    assert callbacks.prediction_picture is prediction_picture
