"""Generators produce values lazily, one at a time, which saves memory on large inputs."""


def read_lines(path):
    """Yield the lines of a file without loading it all into memory."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            yield line.rstrip("\n")


def batched(items, size):
    """Group an iterable into lists of at most `size` items."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
