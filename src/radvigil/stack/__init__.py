"""Run the production topology on one machine: PostgreSQL, MLflow server, replicas, nginx.

Used by ``radvigil stack up``, ``tests/integration/test_stack.py`` and ``bench/stack_load.py``;
the service itself knows nothing of it.
"""

from radvigil.stack.processes import StackError, free_port
from radvigil.stack.topology import Stack, StackConfig

__all__ = ["Stack", "StackConfig", "StackError", "free_port"]
