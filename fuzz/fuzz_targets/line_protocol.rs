#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pulsewire_fuzz::line_protocol(data));
