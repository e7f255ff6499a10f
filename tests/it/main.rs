//! kiln's integration tests, one module per area, linked into one test binary: the library is
//! linked once instead of once per file, and fixtures built on first use (the apk repository
//! key, wheel downloads, venvs, the Debian rootfs) are shared by every test of a run. Run one
//! area with `cargo test --test it NAME::` (for example `cargo test --test it registry_push::`).
//!
//! The tests share one process: a test passes its settings to the child processes it starts
//! (`Command::env`), never through `std::env::set_var` or `set_current_dir`; one that needs the
//! process to itself (process-wide figures, variables kiln reads once per process) runs in a
//! child of this binary with `support::alone_in_own_process`.

mod support;

mod apk_busybox;
mod apk_ca_certificates;
mod apk_export;
mod apk_http;
mod apk_index;
mod apk_package;
mod apk_upgrade;
mod apk_version;
mod apk_virtual_del;
mod attest_documents;
mod attest_layout;
mod attest_python;
mod build_alpine;
mod build_e2e;
mod build_multiplatform;
mod build_python;
mod cache_registry;
mod cli_attest;
mod cli_debug_dockerfile;
mod cli_lock;
mod cli_referrers;
mod cli_registry;
mod copy_context;
mod copy_stage_add;
mod dockerfile_conformance;
mod dockerfile_semantics;
mod fuzz_regressions;
mod hardening_crash;
mod hardening_layers;
mod hardening_layout;
mod hardening_push;
mod image_outputs;
mod layer_memory;
mod layer_tar;
mod layer_write;
mod lockdown;
mod manifest_create;
mod pip_bad_input;
mod pip_install;
mod pip_installed;
mod pip_native_or_sandbox;
mod pip_oracle;
mod pip_resolve;
mod python_tags;
mod python_wheel_bad;
mod python_wheel_oracle;
mod realworld_corpus;
mod registry_credentials;
mod registry_faults;
mod registry_pull;
mod registry_push;
mod registry_remap;
mod registry_tls;
mod registry_tls_mirrors;
mod rootfs_lowerfs;
mod rootfs_reader;
mod sandbox_foreign;
mod sandbox_run;
mod sbom_scanners;
mod scan_cli;
mod scan_seed_images;
mod seed_pipeline;
mod shell_conformance;
mod sign_bundle;
mod sign_cosign_key;
mod sign_cosign_tags;
mod sign_layout_oci;
mod sign_policy_build;
mod sign_policy_examples;
mod sign_policy_offline;
mod sign_verify_layouts;
mod users_e2e;
mod users_oracle;
mod workflows;
