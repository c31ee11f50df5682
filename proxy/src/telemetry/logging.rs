//! The process's diagnostic log: tracing's text or JSON formatter on stderr, filtered by
//! `RUST_LOG` when set, else by `[log] level`, else `info`.

use crate::config::observe::{LogFormat, LogSettings};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Only the first call in a process takes effect (tracing allows
/// one global subscriber); a later one is ignored.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        settings
            .level
            .as_deref()
            .and_then(|level| EnvFilter::try_new(level).ok())
            .unwrap_or_else(|| EnvFilter::new("info"))
    });
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let installed = match settings.format {
        LogFormat::Text => builder.try_init(),
        // One object per line with the event's fields at the top level, as log shippers expect.
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // An error only means a subscriber is already installed, which is what a second call wants.
    drop(installed);
}
