//! Commands. (being written)
