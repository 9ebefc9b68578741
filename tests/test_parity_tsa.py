"""TSA-Net and Plain-Net against the official code's own output (Shunli-Wang/TSA-Net @8e2c36d).

Every reference number below was produced by running the official code (a scratch runner outside
this repository, on the CPU) on the inputs tests/parity_tsa_inputs.py generates; docs/parity.md
("TSA-Net and Plain-Net") says how to regenerate them.
"""

from pathlib import Path

import numpy as np
import pytest

from aqa.models.tubes import fill_convex, fill_convex_poly, tube_mask
from tests.parity_tsa_inputs import random_quads

CV2_MASKS = Path(__file__).parent / "data" / "tsa_cv2_fillconvexpoly.txt"


def cv2_masks() -> dict[tuple[int, int, int], list[np.ndarray]]:
    """{(grid, quads, seed): [mask (grid, grid) bool per quad]} from the file of cv2 output."""
    out, key = {}, None
    for line in CV2_MASKS.read_text().splitlines():
        if line.startswith("#"):
            continue
        if line.startswith("["):
            _, grid, _, n, _, seed = line.strip("[]").split()
            key = (int(grid), int(n), int(seed))
            out[key] = []
            continue
        g = key[0]
        bits = np.unpackbits(np.frombuffer(bytes.fromhex(line), np.uint8))[:g * g]
        out[key].append(bits.reshape(g, g).astype(bool))
    return out


def test_fill_convex_is_cv2_fill_convex_poly_on_hundreds_of_random_quads():
    """Each seeded quad (rotated boxes, any four points, crossed ones, boxes off the frame) is
    scaled to the grid and truncated as the official get_mask does, then rasterised; the masks
    must equal what the official get_mask (cv2.fillConvexPoly) produced, cell for cell."""
    reference = cv2_masks()
    assert sorted(reference) == [(7, 100, 13), (14, 400, 12)]
    checked = 0
    for (grid, n, seed), masks in reference.items():
        assert len(masks) == n
        corners = random_quads(n, seed).reshape(n, 4, 2) / np.array([640 / grid, 360 / grid])
        for i, expected in enumerate(masks):
            ours = fill_convex(corners[i], grid, grid)
            assert np.array_equal(ours, expected), (grid, seed, i, corners[i].tolist())
            checked += 1
    assert checked == 500
    # the same through tube_mask, which scales the 640x360 boxes itself
    boxes = np.repeat(random_quads(400, 12)[:, None], 4, 1)  # (400, 4 frames, 8)
    for i in range(0, 400, 37):
        assert np.array_equal(tube_mask(boxes[i], starts=(0,), clip_len=4, t_ratio=4)[0],
                              reference[(14, 400, 12)][i])


def test_the_reference_is_not_the_lattice_point_fill():
    """The masks are not those of 'a cell is in when its corner point is in the polygon' (what
    fill_convex did before): cv2 draws the edges as 8-connected lines and fills whole spans."""
    reference = cv2_masks()[(14, 400, 12)]
    corners = random_quads(400, 12).reshape(400, 4, 2) / np.array([640 / 14, 360 / 14])
    ys, xs = np.mgrid[0:14, 0:14]
    differ = 0
    for c, expected in zip(corners, reference):
        p = np.trunc(c).astype(int)
        cross = np.stack([(p[(k + 1) % 4, 0] - p[k, 0]) * (ys - p[k, 1])
                          - (p[(k + 1) % 4, 1] - p[k, 1]) * (xs - p[k, 0]) for k in range(4)])
        lattice = (cross >= 0).all(0) | (cross <= 0).all(0)
        differ += not np.array_equal(lattice, expected)
    assert differ > 200  # 284 of the 400


def test_fill_convex_poly_literal_cases():
    """Literal cv2.fillConvexPoly outputs (opencv 4.5.5 and 5.1): a sliver is its 8-connected
    line, a right triangle keeps its hypotenuse, points off the grid are clipped."""
    sliver = fill_convex_poly(np.array([[0, 0], [5, 2], [5, 2], [0, 0]]), 4, 7)
    assert sliver.astype(int).tolist() == [[1, 1, 0, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0, 0],
                                           [0, 0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0, 0]]
    tri = fill_convex_poly(np.array([[0, 0], [4, 0], [0, 4], [0, 4]]), 6, 6)
    assert tri.astype(int).tolist() == [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0],
                                        [1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0] * 6]
    assert fill_convex_poly(np.array([[2, 2]] * 4), 5, 5).sum() == 1
    off = fill_convex_poly(np.array([[-5, -5], [20, -5], [20, 20], [-5, 20]]), 6, 6)
    assert off.all()
    assert not fill_convex_poly(np.array([[-9, -9], [-2, -9], [-2, -2], [-9, -2]]), 6, 6).any()
