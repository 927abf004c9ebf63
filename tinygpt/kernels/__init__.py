"""Speed infrastructure that is not an exercise: which library runs the model's matmuls.

``cpu_matmul`` runs the course model's float32 ``nn.Linear`` layers on the CPU through
oneDNN instead of torch's BLAS (MKL on x86), where that is faster (AMD CPUs). The
training driver (``--cpu-matmul``) and the benchmarks use it; no chapter's learner code
depends on it, and the model, its parameters and checkpoints are the same either way.
"""
