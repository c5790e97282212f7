//! The Cargo features this build of the agent was compiled with, and the message every part
//! uses when configuration asks for one that is missing. An image leaves out what it does not
//! use (the Yocto recipe's PACKAGECONFIG `mqtt` / `ota` map to these names).

use std::sync::LazyLock;

/// A part of the agent that a build may leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// The ThingsBoard MQTT session: attributes, telemetry, RPC.
    Mqtt,
    /// hawkBit updates installed by RAUC over D-Bus.
    Ota,
}

impl Feature {
    pub const ALL: [Feature; 2] = [Feature::Mqtt, Feature::Ota];

    /// The Cargo feature's name.
    pub fn name(self) -> &'static str {
        match self {
            Feature::Mqtt => "mqtt",
            Feature::Ota => "ota",
        }
    }

    pub fn enabled(self) -> bool {
        match self {
            Feature::Mqtt => cfg!(feature = "mqtt"),
            Feature::Ota => cfg!(feature = "ota"),
        }
    }

    /// What a setting of a missing feature is told, e.g. "this build of nexa-agent lacks the
    /// `ota` feature (hawkBit updates)".
    pub fn missing(self) -> String {
        let what = match self {
            Feature::Mqtt => "the ThingsBoard MQTT session",
            Feature::Ota => "hawkBit updates",
        };
        format!(
            "this build of nexa-agent lacks the `{}` feature ({what}; features: {})",
            self.name(),
            list()
        )
    }
}

/// The compiled features, e.g. `mqtt, ota`, or `none`.
pub fn list() -> &'static str {
    static LIST: LazyLock<String> = LazyLock::new(|| {
        let on: Vec<&str> = Feature::ALL
            .iter()
            .filter(|f| f.enabled())
            .map(|f| f.name())
            .collect();
        if on.is_empty() {
            "none".to_owned()
        } else {
            on.join(", ")
        }
    });
    &LIST
}

/// `nexa-agent --version`: the version and the compiled features.
pub fn version() -> &'static str {
    static VERSION: LazyLock<String> =
        LazyLock::new(|| format!("{} (features: {})", env!("CARGO_PKG_VERSION"), list()));
    &VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_matches_the_build() {
        let want: Vec<&str> = [
            cfg!(feature = "mqtt").then_some("mqtt"),
            cfg!(feature = "ota").then_some("ota"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let want = if want.is_empty() {
            "none".to_owned()
        } else {
            want.join(", ")
        };
        assert_eq!(list(), want);
        assert!(version().ends_with(&format!("(features: {want})")));
        let m = Feature::Ota.missing();
        assert!(m.contains("`ota` feature") && m.contains(&want), "{m}");
    }
}
