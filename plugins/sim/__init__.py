"""The `sim` target: a simulated cloud (objects kept in a directory or in memory) with configurable latency,
throttling and failures. For tests, benchmarks and trying a stack's graph without any cloud."""
