"""ttcl.runtime: scheduler, backends, accountant, verifiers, traces.

Heavy imports (torch, transformers) stay inside the modules that need them,
so the compiler and `ttcl check` start fast.
"""
