//! System programs the tests run (Prometheus, Redis), found on `PATH`; a test whose program is
//! missing skips loudly, unless CI's `SLUICE_TEST_REQUIRE_*` variable says it must not.

use std::path::PathBuf;

/// `name` on `PATH`, or `None` after a loud notice naming what is skipped (`skipped`, e.g.
/// "this Redis test") and how to install it (`install`); panics instead when the environment
/// variable `require` is set.
pub fn system_tool(name: &str, skipped: &str, install: &str, require: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        eprintln!(
            "\n\n!!!!!!!! {name} NOT AVAILABLE: {skipped} is SKIPPED. Install it with {install}. \
             !!!!!!!!\n"
        );
        assert!(
            std::env::var_os(require).is_none(),
            "{require} is set but {name} is not installed"
        );
    }
    found
}
