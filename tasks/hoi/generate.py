"""Write a small synthetic HOI data set in the HICO-DET format of QPIC and CDN.

    python -m tasks.hoi.generate --out data/generated/hoi [--train 800] [--test 200] [--seed 0]

Layout (as QPIC expects under ``hico_20160224_det``)::

    annotations/trainval_hico.json  annotations/test_hico.json  annotations/corre_hico.npy
    images/train2015/*.jpg          images/test2015/*.jpg

Each image (112 x 112) holds one or two person-object pairs on a noisy background. A person is a
body with a head whose face (skin) half shows where they look; the back of the head is hair.
Every verb is a visible relation of the pair:

* ``ride``: the person stands on the object; ``carry``: the object rests on the head;
* ``hold``: the object touches the person's side at chest height; ``kick``: at foot height;
* ``look_at``: the person faces the object (also added to ``hold`` and ``kick``);
* ``no_interaction``: the object is apart and the person faces away.

Objects are six COCO classes drawn as distinct shapes. A few (relation, object) combinations get
fewer than 10 training instances, so HICO-DET's Rare split is populated. The output is a
function of the arguments only (fixed seed). The command prepares ``--out`` as a dataset with
``generate_if_missing`` does (:func:`tasks.common.embedded_data.prepare_embedded`): a complete
set is left as it is.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tasks.common.embedded_data import is_complete, prepare_embedded

from .hico import COCO_OBJECT_IDS, NUM_OBJECT_CLASSES

IMAGE_SIZE = 112
VERBS = ("carry", "hold", "kick", "look_at", "no_interaction", "ride")  # verb id = index + 1
VERB_ID = {name: i + 1 for i, name in enumerate(VERBS)}
PERSON_ID = 1
PERSON_WIDTH, PERSON_HEIGHT = (12, 16), (35, 46)  # inclusive ranges, pixels
# COCO id: (name, (min w, max w), (min h, max h)) of each drawn object class.
OBJECTS = {
    2: ("bicycle", (32, 40), (19, 24)),
    19: ("horse", (35, 46), (24, 32)),
    28: ("umbrella", (24, 32), (16, 20)),
    37: ("sports ball", (12, 16), None),  # round: height = width
    41: ("skateboard", (27, 35), (9, 12)),
    47: ("cup", (11, 14), (14, 18)),
}
# Which objects each relation can involve; "apart" gives look_at or no_interaction.
RELATION_OBJECTS = {
    "ride": (2, 19, 41),
    "carry": (28, 37, 47, 41),
    "hold": (28, 37, 47, 2, 41),
    "kick": (37, 41, 47),
    "apart": tuple(OBJECTS),
}
# (relation, object) combinations kept rare: this many training / test pairs each.
RARE_PAIRS = {("kick", 47): (6, 3), ("carry", 41): (5, 3), ("hold", 2): (7, 3)}
SPLITS = {"train": "trainval_hico.json", "test": "test_hico.json"}
SPLIT_SIZES = {"train": 800, "test": 200}
SPLIT_DIRS = {"train": "train2015", "test": "test2015"}


@dataclass
class Pair:
    person: tuple[int, int, int, int]   # inclusive pixel box x1, y1, x2, y2
    obj: tuple[int, int, int, int]
    object_id: int
    verbs: tuple[str, ...]
    faces_right: bool


def correspondence_mask() -> np.ndarray:
    """(verbs, 80) mask: which verbs each object class can take in this data set."""
    mask = np.zeros((len(VERBS), NUM_OBJECT_CLASSES), dtype=bool)
    label = {coco_id: i for i, coco_id in enumerate(COCO_OBJECT_IDS)}
    for relation, objects in RELATION_OBJECTS.items():
        verbs = ("look_at", "no_interaction") if relation == "apart" else (relation,)
        for verb in verbs:
            for object_id in objects:
                mask[VERB_ID[verb] - 1, label[object_id]] = True
    return mask


def _layout(rng: np.random.Generator, relation: str, object_id: int, faces_right: bool):
    """Person and object boxes relative to the person's top-left corner at (0, 0)."""
    pw = int(rng.integers(PERSON_WIDTH[0], PERSON_WIDTH[1] + 1))
    ph = int(rng.integers(PERSON_HEIGHT[0], PERSON_HEIGHT[1] + 1))
    _, (wmin, wmax), heights = OBJECTS[object_id]
    ow = int(rng.integers(wmin, wmax + 1))
    oh = ow if heights is None else int(rng.integers(heights[0], heights[1] + 1))
    side = 1 if rng.random() < 0.5 else -1         # object right (+1) or left (-1) of the person
    if relation == "ride":
        ox = (pw - ow) // 2 + int(rng.integers(-2, 3))
        oy = ph - (2 if object_id == 41 else oh * 2 // 5)
    elif relation == "carry":
        ox, oy = (pw - ow) // 2 + int(rng.integers(-1, 2)), -oh + 1
    else:
        if relation == "hold":
            oy = int(ph * 0.45) - oh // 2 + int(rng.integers(-1, 2))
        elif relation == "kick":
            oy = ph - oh + int(rng.integers(-1, 2))
        else:
            oy = int(rng.integers(-oh // 3, ph - oh // 2))
        gap = int(rng.integers(6, 17)) if relation == "apart" else -int(rng.integers(0, 2))
        ox = pw + gap if side > 0 else -ow - gap
    if relation in ("hold", "kick", "apart"):
        faces_object = faces_right == (side > 0)
        verbs = (relation,) if relation != "apart" else ()
        verbs += ("look_at",) if faces_object else ()
        verbs = verbs or ("no_interaction",)
    else:
        verbs = (relation,)
    person = (0, 0, pw - 1, ph - 1)
    obj = (ox, oy, ox + ow - 1, oy + oh - 1)
    return person, obj, tuple(sorted(verbs))


def _union(a, b):
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _place_pairs(rng, specs) -> list[Pair]:
    """Put each (relation, object) spec at a random spot apart from the pairs already placed."""
    pairs, taken = [], []
    for relation, object_id in specs:
        for _ in range(100):
            faces_right = bool(rng.random() < 0.5)
            person, obj, verbs = _layout(rng, relation, object_id, faces_right)
            x1, y1, x2, y2 = _union(person, obj)
            if x2 - x1 > IMAGE_SIZE - 6 or y2 - y1 > IMAGE_SIZE - 6:
                continue
            dx = int(rng.integers(2 - x1, IMAGE_SIZE - 3 - x2 + 1))
            dy = int(rng.integers(2 - y1, IMAGE_SIZE - 3 - y2 + 1))
            box = (x1 + dx, y1 + dy, x2 + dx, y2 + dy)
            if any(box[0] <= t[2] + 3 and t[0] <= box[2] + 3 and box[1] <= t[3] + 3
                   and t[1] <= box[3] + 3 for t in taken):
                continue
            shift = lambda b: (b[0] + dx, b[1] + dy, b[2] + dx, b[3] + dy)  # noqa: E731
            pairs.append(Pair(shift(person), shift(obj), object_id, verbs, faces_right))
            taken.append(box)
            break
    return pairs


def _draw_object(draw: ImageDraw.ImageDraw, object_id: int, box, rng) -> None:
    x1, y1, x2, y2 = box
    w, h = x2 - x1 + 1, y2 - y1 + 1
    jitter = lambda c: tuple(int(np.clip(v + rng.integers(-20, 21), 0, 255)) for v in c)  # noqa
    if object_id == 2:    # bicycle: two wheels and a frame
        r = min(h // 2, w // 4)
        draw.ellipse((x1, y2 - 2 * r, x1 + 2 * r, y2), outline=jitter((40, 40, 60)), width=2)
        draw.ellipse((x2 - 2 * r, y2 - 2 * r, x2, y2), outline=jitter((40, 40, 60)), width=2)
        frame = jitter((30, 90, 200))
        draw.line((x1 + r, y2 - r, x1 + w // 2, y1 + 1, x2 - r, y2 - r), fill=frame, width=2)
        draw.line((x1 + w // 2 - 3, y1, x1 + w // 2 + 3, y1), fill=frame, width=2)
    elif object_id == 19:  # horse: body, legs, neck and head
        brown = jitter((120, 70, 30))
        draw.rectangle((x1 + 3, y1 + h // 4, x2 - 3, y1 + h * 2 // 3), fill=brown)
        for lx in (x1 + 4, x1 + 8, x2 - 8, x2 - 4):
            draw.rectangle((lx, y1 + h * 2 // 3, lx + 1, y2), fill=brown)
        draw.rectangle((x2 - 4, y1, x2, y1 + h // 3), fill=brown)
        draw.rectangle((x1, y1 + h // 4, x1 + 3, y1 + h // 2), fill=jitter((60, 30, 10)))
    elif object_id == 28:  # umbrella: canopy and handle
        canopy = (h * 2) // 3
        draw.pieslice((x1, y1, x2, y1 + 2 * canopy), 180, 360, fill=jitter((210, 30, 60)))
        draw.line((x1 + w // 2, y1 + canopy, x1 + w // 2, y2), fill=(30, 30, 30), width=1)
    elif object_id == 37:  # sports ball
        draw.ellipse(box, fill=jitter((240, 140, 20)), outline=(90, 50, 0))
        draw.line((x1 + 2, y1 + h // 2, x2 - 2, y1 + h // 2), fill=(255, 255, 255))
    elif object_id == 41:  # skateboard: deck and wheels
        draw.rectangle((x1, y1, x2, y1 + h // 2), fill=jitter((60, 170, 90)))
        for cx in (x1 + 4, x2 - 4):
            draw.ellipse((cx - 2, y2 - 3, cx + 2, y2), fill=(20, 20, 20))
    elif object_id == 47:  # cup with a rim
        draw.rectangle(box, fill=jitter((230, 230, 240)), outline=jitter((40, 120, 160)))
        draw.line((x1, y1 + 1, x2, y1 + 1), fill=(40, 40, 40))


def _draw_person(draw: ImageDraw.ImageDraw, pair: Pair, rng) -> None:
    x1, y1, x2, y2 = pair.person
    w = x2 - x1 + 1
    head = w - 1
    shirt = tuple(int(v) for v in rng.choice([(40, 60, 180), (150, 40, 150), (30, 120, 60)]))
    draw.rectangle((x1, y1 + head, x2, y2 - 6), fill=shirt)
    draw.rectangle((x1 + 1, y2 - 6, x1 + w // 2 - 1, y2), fill=(50, 50, 50))     # legs
    draw.rectangle((x1 + w // 2 + 1, y2 - 6, x2 - 1, y2), fill=(50, 50, 50))
    draw.ellipse((x1, y1, x1 + head, y1 + head), fill=(70, 40, 20))              # hair
    if pair.faces_right:                                                          # face
        draw.pieslice((x1, y1, x1 + head, y1 + head), -90, 90, fill=(240, 190, 150))
        draw.point((x2 - 2, y1 + head // 2 - 1), fill=(0, 0, 0))
    else:
        draw.pieslice((x1, y1, x1 + head, y1 + head), 90, 270, fill=(240, 190, 150))
        draw.point((x1 + 2, y1 + head // 2 - 1), fill=(0, 0, 0))


def render(rng: np.random.Generator, pairs: list[Pair]) -> Image.Image:
    base = rng.integers(150, 236, size=3)
    pixels = base + rng.normal(0, 7, size=(IMAGE_SIZE, IMAGE_SIZE, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for pair in pairs:
        _draw_object(draw, pair.object_id, pair.obj, rng)
    for pair in pairs:
        _draw_person(draw, pair, rng)
    return image


def _split_specs(rng, split: str, num_images: int) -> list[list[tuple[str, int]]]:
    """(relation, object) specs per image: the rare quotas first, then common combinations."""
    quota = 0 if split == "train" else 1
    rare = [spec for spec, counts in RARE_PAIRS.items() for _ in range(counts[quota])]
    common = [(relation, object_id) for relation, objects in RELATION_OBJECTS.items()
              for object_id in objects if (relation, object_id) not in RARE_PAIRS]
    images = []
    for _ in range(num_images):
        count = 1 + int(rng.random() < 0.5)
        specs = [rare.pop()] if rare else []
        while len(specs) < count:
            specs.append(common[int(rng.integers(len(common)))])
        images.append(specs)
    return images


def write_split(root: Path, split: str, num_images: int, rng: np.random.Generator) -> list:
    entries = []
    image_dir = root / "images" / SPLIT_DIRS[split]
    image_dir.mkdir(parents=True, exist_ok=True)
    for index, specs in enumerate(_split_specs(rng, split, num_images)):
        pairs = _place_pairs(rng, specs)
        file_name = f"HICO_{SPLIT_DIRS[split]}_{index + 1:08d}.jpg"
        render(rng, pairs).save(image_dir / file_name, quality=95)
        annotations, hois = [], []
        for pair in pairs:
            subject_id = len(annotations)
            annotations.append({"bbox": list(pair.person), "category_id": PERSON_ID})
            annotations.append({"bbox": list(pair.obj), "category_id": pair.object_id})
            hois += [{"subject_id": subject_id, "object_id": subject_id + 1,
                      "category_id": VERB_ID[verb]} for verb in pair.verbs]
        entries.append({"file_name": file_name, "img_id": index + 1,
                        "annotations": annotations, "hoi_annotation": hois})
    with open(root / "annotations" / SPLITS[split], "w") as f:
        json.dump(entries, f)
    return entries


def generate(out, num_train: int = SPLIT_SIZES["train"], num_test: int = SPLIT_SIZES["test"],
             seed: int = 0) -> Path:
    """Write the whole data set (both splits and the verb x object mask) into the directory
    ``out`` and return it."""
    out = Path(out)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, count in (("train", num_train), ("test", num_test)):
        write_split(out, split, count, rng)
    np.save(out / "annotations" / "corre_hico.npy", correspondence_mask())
    return out


def split_statistics(root) -> dict:
    """Per split: images and HOIs, and training counts of each (object, verb) triplet."""
    stats = {}
    for split, name in SPLITS.items():
        entries = json.loads((Path(root) / "annotations" / name).read_text())
        triplets = Counter((e["annotations"][h["object_id"]]["category_id"], h["category_id"])
                           for e in entries for h in e["hoi_annotation"])
        stats[split] = {"images": len(entries), "hois": sum(triplets.values()),
                        "triplets": dict(sorted(triplets.items()))}
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/generated/hoi")
    parser.add_argument("--train", type=int, default=SPLIT_SIZES["train"],
                        help="training images")
    parser.add_argument("--test", type=int, default=SPLIT_SIZES["test"], help="test images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if is_complete(args.out):
        parser.exit(message=f"{args.out} holds a complete data set; remove it to regenerate\n")
    root = prepare_embedded(args.out, partial(generate, num_train=args.train, num_test=args.test,
                                              seed=args.seed))
    stats = split_statistics(root)
    print(f"{root}: " + ", ".join(f"{s} {v['images']} images / {v['hois']} HOIs"
                                  for s, v in stats.items()))


if __name__ == "__main__":
    main()
