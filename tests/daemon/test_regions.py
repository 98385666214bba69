"""Regions: boxes, crops, and the order the inference thread serves cameras and regions."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from daemon_support import make_config
from edgebnn.daemon.config import SAMPLES_DIR, ConfigError, parse_config
from edgebnn.daemon.frames import Frame
from edgebnn.daemon.regions import CameraPlan, RegionConfig, Scheduler, box_problem


class Board:
    """The newest frame of each camera, taken in turn (what frames.FrameBoard does)."""

    def __init__(self) -> None:
        self.slots: dict[str, Frame] = {}

    def put(self, frame: Frame) -> None:
        old = self.slots.pop(frame.camera, None)
        if old is not None:
            old.release()  # replaced before inference took it
        self.slots[frame.camera] = frame

    def take(self, timeout: float) -> Frame | None:
        if not self.slots:
            time.sleep(min(timeout, 0.01))
            return None
        name = next(iter(self.slots))
        return self.slots.pop(name)


released: list[tuple[str, float]] = []


def frame(camera: str, value: int = 0, size: tuple[int, int] = (48, 64)) -> Frame:
    image = np.full((*size, 3), value, np.uint8)
    captured_at = float(value)
    return Frame(camera, image, captured_at, release=lambda: released.append((camera, captured_at)))


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
    board = Board()
    scheduler = Scheduler(board)
    regions = tuple(RegionConfig(n, (0, 0, 0.5, 0.5)) for n in ("r1", "r2", "r3"))
    scheduler.configure([CameraPlan("a", False, regions), CameraPlan("b", True, ())])
    served = []
    for step in range(12):
        # both cameras always have a fresh frame: a is 3 units, b is 1
        for name in ("a", "b"):
            board.put(frame(name, step))
        choice = scheduler.next(0.5)
        assert choice is not None
        got, unit, _ = choice
        assert got.captured_at == step  # always the newest frame
        served.append(unit.key)
        scheduler.finished(got)
    # cameras alternate; a's regions take turns inside a's share
    cameras = [c for c, _ in served]
    assert cameras in (["a", "b"] * 6, ["b", "a"] * 6)
    a_regions = [r for c, r in served if c == "a"]
    assert sorted(a_regions[:3]) == ["r1", "r2", "r3"] == sorted(a_regions[3:])


def test_skips_are_counted_per_region_and_per_camera() -> None:
    board = Board()
    skips: list[tuple[str, str | None, bool]] = []
    scheduler = Scheduler(board, on_skip=lambda c, r, u: skips.append((c, r, u)))
    regions = (RegionConfig("left", (0, 0, 0.5, 1)), RegionConfig("right", (0.5, 0, 0.5, 1)))
    scheduler.configure([CameraPlan("cam", True, regions)])
    board.put(frame("cam", 1))
    got, unit, first = scheduler.next(0.5)
    assert (got.captured_at, unit.key, first) == (1.0, ("cam", None), True)
    scheduler.finished(got)
    # frame 2 arrives before left and right had frame 1: both miss it, the camera does not
    board.put(frame("cam", 2))
    got, unit, first = scheduler.next(0.5)
    assert got.captured_at == 2.0 and first
    assert sorted(skips) == [("cam", "left", False), ("cam", "right", False)]
    skips.clear()
    scheduler.finished(got)
    # frame 3 replaces frame 2 after one unit used it: the other two miss frame 2
    board.put(frame("cam", 3))
    got, unit, first = scheduler.next(0.5)
    assert got.captured_at == 3.0 and first
    assert len(skips) == 2 and not any(unclassified for _, _, unclassified in skips)
    assert scheduler.pending() == 2
    scheduler.finished(got)
    # frames 4 and 5 both reach inference before any unit ran: 4 is classified by none
    board.put(frame("cam", 4))
    scheduler._receive(board.take(0))  # what next() does with each frame it drains
    board.put(frame("cam", 5))
    got, _, first = scheduler.next(0.5)
    assert got.captured_at == 5.0 and first
    assert ("cam", None, True) in skips
    scheduler.finished(got)


def test_frames_are_released_when_replaced_or_done_never_while_in_use() -> None:
    released.clear()
    board = Board()
    scheduler = Scheduler(board)
    regions = (RegionConfig("left", (0, 0, 0.5, 1)),)
    scheduler.configure([CameraPlan("cam", True, regions)])
    board.put(frame("cam", 1))
    first, _, _ = scheduler.next(0.5)
    board.put(frame("cam", 2))  # arrives while frame 1 is being classified
    scheduler._receive(board.take(0))
    assert released == []  # frame 1 is in use
    scheduler.finished(first)
    assert released == [("cam", 1.0)]  # replaced: released once inference let go
    for _ in range(2):  # both units classify frame 2
        got, _, _ = scheduler.next(0.5)
        assert got.captured_at == 2.0 and released == [("cam", 1.0)]
        scheduler.finished(got)
    assert released == [("cam", 1.0), ("cam", 2.0)]  # every unit had it
    assert scheduler.next(0.05) is None
    board.put(frame("cam", 3))
    got, _, _ = scheduler.next(0.5)
    scheduler.finished(got)
    scheduler.configure([])  # camera removed: its held frame goes back
    assert released[-1] == ("cam", 3.0)
    board.put(frame("cam", 4))
    got, _, _ = scheduler.next(0.5)  # an unconfigured camera: the whole frame
    scheduler.close()  # the daemon stops while frame 4 is in use...
    assert released[-1] == ("cam", 3.0)
    scheduler.finished(got)  # ...and it is released when inference lets go
    assert released[-1] == ("cam", 4.0)


def test_waits_without_frames() -> None:
    board = Board()
    scheduler = Scheduler(board)
    scheduler.configure([CameraPlan("cam", True, ())])
    assert scheduler.next(0.05) is None
    board.put(frame("cam", 1))
    got, _, _ = scheduler.next(0.5)
    scheduler.finished(got)
    assert scheduler.next(0.05) is None  # the one unit has classified the newest frame
    assert scheduler.pending() == 0


# ---------------------------------------------------------------- configuration

CONFIG = """\
model: random:d_I64x64x3NCMNBMNBMNBMNBMNBMNC1A
cameras:
  - name: door
    source: {source}
    width: 640
    height: 480
    regions:
{regions}
"""


def parse_regions(tmp_path: Path, regions: str, **extra: str) -> Any:
    text = CONFIG.format(source=SAMPLES_DIR, regions=textwrap.indent(regions, "      "))
    for key, value in extra.items():
        text = text.replace("    width: 640\n", f"    width: 640\n    {key}: {value}\n")
    return parse_config(text, base_dir=tmp_path, filename="c.yaml")


def test_regions_config_in_fractions_and_pixels(tmp_path: Path) -> None:
    config = parse_regions(
        tmp_path,
        "- {name: flap, box: [0.5, 0.5, 0.5, 0.5]}\n"
        "- name: feeder\n  box: [0, 0, 320, 240]\n  groups: {bird: ['10-24']}\n",
        full_frame="false",
    )
    camera = config.cameras[0]
    assert not camera.full_frame
    flap, feeder = camera.regions
    assert (flap.name, flap.box, flap.pixels, flap.groups) == ("flap", (0.5,) * 4, False, None)
    assert (feeder.box, feeder.pixels) == ((0.0, 0.0, 320.0, 240.0), True)
    assert feeder.groups == (("bird", tuple(range(10, 25))),)
    plain = parse_config(
        CONFIG.format(source=SAMPLES_DIR, regions="      []"), base_dir=tmp_path
    ).cameras[0]
    assert plain.regions == () and plain.full_frame


@pytest.mark.parametrize(
    ("regions", "key", "line", "words"),
    [
        ("- {name: a, box: [0.6, 0, 0.5, 1]}", "cameras[0].regions[0].box", 8, ["inside"]),
        ("- {name: a, box: [400, 0, 300, 100]}", "cameras[0].regions[0].box", 8, ["width 640"]),
        ("- {name: a, box: [0, 0, 1]}", "cameras[0].regions[0].box", 8, ["[x, y, width"]),
        ("- {name: a}", "cameras[0].regions[0].box", 8, ["required"]),
        ("- {box: [0, 0, 1, 1]}", "cameras[0].regions[0].name", 8, ["required"]),
        ("- {name: 'a b', box: [0, 0, 1, 1]}", "cameras[0].regions[0].name", 8, ["letters"]),
        (
            "- {name: a, box: [0, 0, 1, 1]}\n- {name: a, box: [0, 0, 1, 1]}",
            "cameras[0].regions[1].name",
            9,
            ["duplicate region name 'a'"],
        ),
        ("- {name: a, box: [0, 0, 1, 1], zone: 2}", "cameras[0].regions[0].zone", 8, ["unknown"]),
        (
            "- {name: a, box: [0, 0, 1, 1], groups: {cat: [-1]}}",
            "cameras[0].regions[0].groups.cat[0]",
            8,
            [">= 0"],
        ),
        ("- 3", "cameras[0].regions[0]", 8, ["must be a mapping"]),
    ],
)
def test_region_errors_name_the_line_and_key(tmp_path, regions, key, line, words) -> None:
    with pytest.raises(ConfigError) as info:
        parse_regions(tmp_path, regions)
    matching = [i for i in info.value.issues if i.key == key]
    assert matching, info.value.lines()
    assert matching[0].line == line, info.value.lines()
    for word in words:
        assert word in matching[0].message


def test_full_frame_false_needs_regions(tmp_path: Path) -> None:
    text = CONFIG.format(source=SAMPLES_DIR, regions="").replace("    regions:\n", "")
    text += "    full_frame: false\n"
    with pytest.raises(ConfigError, match=r"cameras\[0\].full_frame: false needs regions"):
        parse_config(text, base_dir=tmp_path)


# ---------------------------------------------------------------- the daemon, end to end


def test_objects_pasted_into_corners_are_classified_in_their_regions(
    tmp_path: Path, start_daemon, recorder
) -> None:
    """EfficientNet-Lite0 on a 960x720 frame (the astronaut photo) with the espresso photo
    pasted into the top-right corner and the cat photo into the bottom-left one."""
    samples = {n: cv2.imread(str(SAMPLES_DIR / f"{n}.jpg")) for n in ("coffee", "chelsea")}
    frame = cv2.resize(cv2.imread(str(SAMPLES_DIR / "astronaut.jpg")), (960, 720))
    frame[:213, 640:960] = samples["coffee"]  # 320x213
    frame[720 - 213 :, :320] = samples["chelsea"]
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "frame.png"), frame)
    config = make_config(
        tmp_path,
        [
            {
                "name": "kitchen",
                "source": str(folder),
                "max_fps": 4,
                "regions": [
                    {"name": "cup", "box": [640, 0, 320, 213]},
                    {
                        "name": "flap",
                        "box": [0, (720 - 213) / 720, 1 / 3, 213 / 720],
                        "groups": {"cat": {"builtin": "cats"}},
                    },
                ],
            }
        ],
        model="efficientnet-lite0",
    )
    rec = recorder(config.publish.endpoints[0], (b"predictions/kitchen/", b"stats/"))
    running = start_daemon(config)
    running.wait_ready(timeout=900)  # a cold Numba cache compiles EfficientNet first
    assert rec.wait_for(
        lambda r: (
            all(len(r.of(f"predictions/kitchen/{n}/")) >= 2 for n in ("cup", "flap"))
            and any(region_stats(s) for s in r.of("stats/"))
        ),
        timeout=120,
    )
    running.stop()
    cups = rec.of("predictions/kitchen/cup/")
    flaps = rec.of("predictions/kitchen/flap/")
    wholes = [p for p in rec.of("predictions/kitchen/") if "region" not in p]
    for p in cups:
        assert p["region"] == "cup" and p["box"] == [640, 0, 320, 213]
        assert p["top"][0]["label"] == "espresso" and p["top"][0]["score"] > 0.5
        assert set(p["groups"]) == {"dog", "cat", "low"}  # the daemon's groups
    for p in flaps:
        assert p["region"] == "flap" and p["box"] == [0, 507, 320, 213]
        assert "cat" in p["top"][0]["label"]
        assert set(p["groups"]) == {"cat"} and p["groups"]["cat"] > 0.9  # its own groups
    assert wholes and all(p["top"][0]["label"] != "espresso" for p in wholes)
    for unit in (cups, flaps, wholes):  # each unit numbers its own messages
        assert [p["seq"] for p in unit] == list(range(1, len(unit) + 1))
    regions = [region_stats(s) for s in rec.of("stats/") if region_stats(s)][-1]
    assert set(regions) == {"cup", "flap"}
    for r in regions.values():
        assert r["skipped"] >= 0 and r["inference_ms_p50"] > 0


def region_stats(stats: dict[str, Any]) -> dict[str, Any] | None:
    """The kitchen camera's region counters once every region classified a frame."""
    regions = stats["cameras"].get("kitchen", {}).get("regions", {})
    return regions if regions and all(r["processed"] >= 1 for r in regions.values()) else None
