"""Every size threshold that picks a code path, in one place, each with the measurement behind it.

Counts are scalar parameters of the model unless said otherwise. The generated C package's runtime
receives ``PACK_LIMIT`` as a constant of the package.
"""

SCALAR_LIMIT = 5000  # networks with more get no per-neuron program (no per-parameter symbolic gradients)
SMALL_LIMIT = 60  # networks with more get the layer-level report instead of the neuron-by-neuron one
GRAPH_SCALAR_TERMS = 1000  # graph networks whose layers unrolled element by element have more terms get no
# per-neuron program (measured: conv_tiny, 90 terms, derives in 0.9 s; a 1x10x10 conv-pool-dense net of 1700 in 12 s)

SCALAR_PATH_PARAMS = 64  # NumPy: networks with at most this many get a per-sample straight-line path,
SCALAR_PATH_WORK = 480  # used while rows * assignments stays below this (measured: array code wins above)

UNROLL_LIMIT = 40  # C: networks with at most this many get a straight-line path for batch 1
# (measured per gradient call at batch 1, gcc -O3 -march=native, straight-line / loops: 2-2-2 (10 parameters) 0.035 /
# 0.10 us, 3-5-2 (32) 0.096 / 0.123, 4-6-3 (51) 0.136 / 0.121, 4-8-8-2 (130) 0.34 / 0.27, 8-16-16-4 (484) 0.88 / 0.69;
# at batch 64 the loops win at every size: 2-2-2 0.80 vs 2.2 us)
BLAS_MIN_WORK = 4096  # C: m*n*k below which the built-in kernels beat a BLAS call (8-16-16-4: 1.07 vs 1.7 us at batch 1)
PACK_LIMIT = 4096  # C package: up to this many parameters, packing a dict into one vector costs less than views
HESSIAN_LIMIT = 2000  # generated hessian(): full matrices up to this many trainable parameters (one hvp per column;
# 2000 columns of a 2000-parameter model are 32 MB of float64 and 2000 hvp calls); above it, hvp
CONV_GEMM_MIN_WORK = 2048  # C: a convolution with out_channels * positions * in_channels * kernel entries below this
# runs as loops, from it on as im2col and one GEMM per sample (measured, forward + backward, built-in kernels, gcc -O3
# -march=native: 648 multiply-adds 1.2 us loops / 2.1 us GEMM at batch 1; 2646: 7.6 / 3.9; 28800: 84 / 45; 240000
# (LeNet's conv2): 814 / 381; at batch 64 the same order). A GEMM per sample, not one over the batch: LeNet's
# gradient at batch 64 took 45.5 ms against 67.0 ms (built-in kernels; host BLAS on one thread 26.1 / 31.7 ms),
# as the batch's im2col columns (10 MB for conv1) leave the cache and one sample's stay in it
