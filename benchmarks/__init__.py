"""Benchmarks: commands that measure time and accuracy and write JSON plus markdown under outputs/benchmarks/."""
