//! Printing the effective settings as TOML, secrets redacted, each value annotated with its layer.

use std::fmt::Write as _;

use crate::Loaded;

impl Loaded {
    /// The effective settings as a TOML document. Secret URLs are redacted by their `Serialize`
    /// implementation; each value ends with a comment naming the layer that set it.
    pub fn to_annotated_toml(&self) -> String {
        // Serialising our own plain structs to a TOML table cannot fail.
        let table = toml::Table::try_from(&self.settings).expect("settings serialise to a TOML table");
        let mut out = format!("# effective pollwatch settings (environment `{}`)\n", self.environment);
        for (section, values) in &table {
            let toml::Value::Table(values) = values else { continue };
            let _ = write!(out, "\n[{section}]\n");
            for (key, value) in values {
                let assignment = format!("{key} = {value}");
                let origin = self.origin_of(&format!("{section}.{key}"));
                let _ = writeln!(out, "{assignment:<48} # {origin}");
            }
        }
        out
    }
}
