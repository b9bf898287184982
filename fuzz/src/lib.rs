//! The fuzz targets' shared code: the devices' test-side guest driver
//! (`daemon/devices/tests/common`) and the targets' bodies
//! (`daemon/devices/tests/fuzzing`), compiled once with coverage
//! instrumentation. The same bodies run as a stable test
//! (`daemon/devices/tests/fuzz_corpus.rs`) over `fuzz/corpus/*`.

#[path = "../../daemon/devices/tests/common/mod.rs"]
pub mod common;
#[path = "../../daemon/devices/tests/fuzzing/mod.rs"]
pub mod fuzzing;
