"""The names of the white-balance front end inside a model graph: one contract, written by the
trainer (trainer/white_balance_graph.py) and read by the app's split (front_end.py) and the
trainer's rebuild. Plain strings, no imports: the app reads them without onnx or TensorFlow.
In the order the graph computes them from the cast pixels (float NHWC)."""

from __future__ import annotations

# The background measurement: the k-th brightest 4x4 cell mean per channel.
CROP = "wb_crop"  # only where H or W is not a multiple of 4
CROP_START, CROP_END, CROP_AXES = "wb_crop_start", "wb_crop_end", "wb_crop_axes"
BLOCKS_SHAPE = "wb_blocks"  # initializer [-1, H/4, 4, W/4, 4, 3]
BLOCKS = "wb_block6"
POOLED = "wb_pooled"
CELLS_SHAPE = "wb_flat"  # initializer [-1, cells, 3]
CELLS_LAST = "wb_cells_last"
CELLS = "wb_cells"  # [N, 3, cells]
K = "wb_k"  # initializer [k]: the rank of the background among the cells, brightest first
TOP, TOP_INDEX = "wb_top", "wb_top_idx"
KTH_START, KTH_END, KTH_AXIS = "wb_last_start", "wb_last_end", "wb_axis"
KTH = "wb_bright3"
ONE = "wb_one"
BRIGHT = "wb_bright"  # [N, 3, 1] float32: the background; the split graph takes it as an input

# The scale, applied after the graph's own transpose to channels-first.
REFERENCE = "wb_reference_col"  # initializer [3, 1]: the training images' background
SCALE_COLUMN = "wb_scale3"
SCALE_SHAPE = "wb_shape"
SCALE = "wb_scale"  # [N, 3, 1, 1]
UNBALANCED = "wb_nchw"  # the scaled pixels, channels-first, before the white balance
SCALED = "wb_scaled"
CEILING = "wb_hi"  # 255 in the scaled pixels' units: the clip
