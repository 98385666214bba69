"""Regions: boxes, crops, and the order the inference thread serves cameras and regions."""

from __future__ import annotations

import numpy as np
import pytest
from edgebnn.daemon.capture import Frame, FrameBoard
from edgebnn.daemon.regions import CameraPlan, RegionConfig, Scheduler, box_problem


def frame(camera: str, value: int = 0, size: tuple[int, int] = (48, 64)) -> Frame:
    return Frame(camera, np.full((*size, 3), value, np.uint8), float(value))


def test_fraction_and_pixel_boxes_crop_the_right_pixels() -> None:
    image = np.arange(48 * 64 * 3, dtype=np.uint32).reshape(48, 64, 3).astype(np.uint8)
    right_half = RegionConfig("r", (0.5, 0.0, 0.5, 1.0))
    assert right_half.pixel_box(64, 48) == (32, 0, 32, 48)
    assert np.array_equal(right_half.crop(image), image[:, 32:])
    corner = RegionConfig("c", (40, 30, 24, 18), pixels=True)
    assert corner.pixel_box(64, 48) == (40, 30, 24, 18)
    assert np.array_equal(corner.crop(image), image[30:48, 40:64])
    # a pixel box larger than the actual frame is clipped; one wholly outside is an error
    assert RegionConfig("big", (40, 30, 100, 100), pixels=True).pixel_box(64, 48) == (
        40,
        30,
        24,
        18,
    )
    with pytest.raises(ValueError, match="outside the 64x48 frame"):
        RegionConfig("out", (100, 100, 10, 10), pixels=True).crop(image)


@pytest.mark.parametrize(
    ("box", "size", "problem"),
    [
        ([0, 0, 0.5, 0.5], None, None),
        ([0.5, 0.5, 0.5, 0.5], None, None),
        ([10, 20, 300, 200], (640, 480), None),
        ([0.6, 0, 0.5, 1], None, "inside the frame"),
        ([0, 0, 0, 0.5], None, "must be > 0"),
        ([-0.1, 0, 0.5, 0.5], None, ">= 0"),
        ([10, 20, 300], None, "list [x, y, width, height]"),
        ("0 0 1 1", None, "list [x, y, width, height]"),
        ([0, 0, "a", 1], None, "four numbers"),
        ([0, 0, True, 1], None, "four numbers"),
        ([10.5, 20, 300, 200], None, "whole numbers"),
        ([400, 20, 300, 200], (640, 480), "beyond the frame width 640"),
        ([0, 300, 300, 200], (640, 480), "beyond the frame height 480"),
    ],
)
def test_box_validation(box, size, problem) -> None:
    found, _ = box_problem(box, *(size or (None, None)))
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_cameras_take_turns_then_regions_within_a_camera() -> None:
    board = FrameBoard()
    tokens = {name: board.add(name) for name in ("a", "b")}
    scheduler = Scheduler(board)
    regions = tuple(RegionConfig(n, (0, 0, 0.5, 0.5)) for n in ("r1", "r2", "r3"))
    scheduler.configure([CameraPlan("a", False, regions), CameraPlan("b", True, ())])
    served = []
    for step in range(12):
        # both cameras always have a fresh frame: a is 3 units, b is 1
        for name in ("a", "b"):
            board.put(tokens[name], frame(name, step))
        choice = scheduler.next(0.5)
        assert choice is not None
        got, unit, _ = choice
        assert got.captured_at == step  # always the newest frame
        served.append(unit.key)
    # cameras alternate; a's regions take turns inside a's share
    assert [c for c, _ in served] == ["a", "b"] * 6 or [c for c, _ in served] == ["b", "a"] * 6
    a_regions = [r for c, r in served if c == "a"]
    assert sorted(a_regions) == ["r1", "r1", "r2", "r2", "r3", "r3"]
    assert a_regions[:3] == sorted(a_regions[:3]) or len(set(a_regions[:3])) == 3


def test_skips_are_counted_per_region_and_per_camera() -> None:
    board = FrameBoard()
    token = board.add("cam")
    skips: list[tuple[str, str | None, bool]] = []
    scheduler = Scheduler(board, on_skip=lambda c, r, u: skips.append((c, r, u)))
    regions = (RegionConfig("left", (0, 0, 0.5, 1)), RegionConfig("right", (0.5, 0, 0.5, 1)))
    scheduler.configure([CameraPlan("cam", True, regions)])
    board.put(token, frame("cam", 1))
    got, unit, first = scheduler.next(0.5)
    assert (got.captured_at, unit.key, first) == (1.0, ("cam", None), True)
    # frame 2 arrives before left and right had frame 1: both miss it, the camera does not
    board.put(token, frame("cam", 2))
    got, unit, first = scheduler.next(0.5)
    assert got.captured_at == 2.0 and first
    assert sorted(skips) == [("cam", "left", False), ("cam", "right", False)]
    skips.clear()
    # frame 3 replaces frame 2 after one unit used it: the other two miss frame 2
    board.put(token, frame("cam", 3))
    got, unit, first = scheduler.next(0.5)
    assert got.captured_at == 3.0 and first
    assert len(skips) == 2 and not any(unclassified for _, _, unclassified in skips)
    assert scheduler.pending() == 2
    # frames 4 and 5 both reach inference before any unit ran: 4 is classified by none
    board.put(token, frame("cam", 4))
    scheduler._receive(board.take(0))  # what next() does with each frame it drains
    board.put(token, frame("cam", 5))
    got, _, first = scheduler.next(0.5)
    assert got.captured_at == 5.0 and first
    assert ("cam", None, True) in skips
    assert scheduler.latest("cam").captured_at == 5.0


def test_reconfigure_drops_removed_cameras_and_waits_without_frames() -> None:
    board = FrameBoard()
    token = board.add("cam")
    scheduler = Scheduler(board)
    scheduler.configure([CameraPlan("cam", True, ())])
    assert scheduler.next(0.05) is None
    board.put(token, frame("cam", 1))
    assert scheduler.next(0.5) is not None
    assert scheduler.next(0.05) is None  # the one unit has classified the newest frame
    scheduler.configure([])
    assert scheduler.latest("cam") is None
