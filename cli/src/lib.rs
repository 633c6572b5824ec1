//! The library half of the `p2pchat` package: the parts of the program that other crates
//! (the fuzz targets) use. The program itself is `main.rs`.
#![forbid(unsafe_code)]

pub mod config;
