"""Public data sets: one module each, holding its schema (the declared features), its parser and the
``RecDataset`` a config names by the module name (``runner.train_reader_path: criteo``)."""
