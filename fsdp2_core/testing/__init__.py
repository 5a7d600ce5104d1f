"""What tests and benchmarks share: gloo ranks spawned on CPU (`spawn`) and tiny models and data (`tiny`).

Shipped with the package, as `torch.testing` is, so that tests, benchmarks and users' own checks spawn ranks
the same way; nothing in the engine imports it.
"""
