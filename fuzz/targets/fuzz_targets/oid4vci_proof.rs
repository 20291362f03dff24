#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sichat_fuzz_harness::oid4vci_proof(data));
