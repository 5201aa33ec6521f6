"""The data layer readers build on: source files are converted once into a memory-mapped
columnar cache (see models.common.features for the declared schema and the storage layout), and
batches are fancy-indexed out of it as ``{name: array}``.

- ``parsers``: one parser per source format (PaddleRec's slot lines, ``.npz`` columns, rows of
  numbers, Ali-CCP's field:id pairs, a columnar CSV);
- ``cache``: the conversion of each file into the columnar cache (validated line by line, in bulk,
  in bounded memory; atomic) and the listing of a data folder;
- ``columns``: the datasets readers return (``CachedDataset`` over the cache, ``ArrayDataset`` in
  memory, ``RowRange`` of another).

A public data set's module (models/common/datasets) declares ``schema(config)``, its parser and a
``RecDataset`` that is a ``CachedDataset``; later runs open the cache with no parsing at all.
"""
from models.common.data.cache import ColumnarCache, cache_folder_for, list_data_files
from models.common.data.columns import ArrayDataset, CachedDataset, ColumnDataset, RowRange
from models.common.data.parsers import (Chunk, ColumnarCSVParser, DataFormatError, FieldPairParser, NpzParser,
                                        NumberRowsParser, SlotParser, iter_line_blocks, parse_spaced_numbers)

__all__ = ["ArrayDataset", "CachedDataset", "Chunk", "ColumnDataset", "ColumnarCSVParser", "ColumnarCache",
           "DataFormatError", "FieldPairParser", "NpzParser", "NumberRowsParser", "RowRange", "SlotParser",
           "cache_folder_for", "iter_line_blocks", "list_data_files", "parse_spaced_numbers"]
