//! kiln: a daemonless, rootless OCI image builder.
//!
//! A Dockerfile and its context go in; a reproducible OCI image comes out. The data flows:
//! [`dockerfile`] parses and plans, [`build`] executes each stage's steps ([`steps`]) against
//! a read-only view of the lower layers ([`rootfs`]), each step's [`layer::Diff`] becomes a
//! content-addressed blob through [`layer::write`] into the [`store`], and [`image`] assembles
//! configs, manifests and the chosen output.
#![deny(missing_docs)]

pub mod apk;
#[cfg(test)]
mod architecture_tests;
pub mod attest;
pub mod build;
pub mod context;
pub mod digest;
pub mod dockerfile;
pub mod http;
pub mod image;
pub mod layer;
pub mod lock;
pub mod material;
pub mod parallel;
pub mod pin;
pub mod python;
pub mod registry;
pub mod rootfs;
pub mod sandbox;
pub mod scan;
pub mod shell;
pub mod steps;
pub mod store;
pub mod users;
