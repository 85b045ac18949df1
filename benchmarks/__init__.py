"""Side-by-side benchmarks of govc against a bare grpclib + betterproto2 floor.

`python -m benchmarks` starts both servers in their own processes, runs every benchmark module in
interleaved rounds from one client process, prints the table and writes BENCHMARKS.md.
"""
