//! Integration tests, compiled as one binary: they drive the real `candlelog`
//! binary (and, for properties, the library) against real files.

mod it;
mod support;
