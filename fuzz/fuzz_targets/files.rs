//! A valid cache directory with damaged files, opened and used: see `diskcache_fuzz::files`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(input) = diskcache_fuzz::files::decode(data) {
        diskcache_fuzz::files::run(&input);
    }
});
