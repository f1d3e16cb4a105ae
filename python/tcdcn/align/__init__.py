"""Batch alignment of face collections (tcdcn-align): crops warped to a template, a Parquet
row per face, on this machine (a process pool) or a Ray cluster (Ray Data actors).

    from tcdcn.align.run import align
    from tcdcn.align.job import AlignSettings, read_rows
    align(["photos/"], Path("aligned"), AlignSettings(), engine="local", workers=2)
    read_rows("aligned").to_pandas()
"""
