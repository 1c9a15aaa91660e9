//! Time-series encodings shared by the store and the analysis code: compressed head chunks,
//! the sealed-block codec, and mergeable summaries (quantile sketch and rollup aggregates).
