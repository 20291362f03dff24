#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sichat_fuzz_harness::client_form(data));
