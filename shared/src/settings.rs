//! Reading settings from the environment, the primitives every area's configuration type
//! uses: the variables of one start-up ([`Env`]), each area's scalars deserialized from them
//! by `envy` (names, types and defaults declared once, on the area's own struct), choices
//! ([`Env::choice`]), and [`ConfigError`], which always names the variable. The areas'
//! types are composed into `config::Config`.

use std::collections::HashMap;

use serde::de::DeserializeOwned;

/// What went wrong reading the configuration. Always names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A variable the chosen setup needs is not set.
    #[error("missing environment variable {var}: {why}")]
    Missing {
        /// The variable's name.
        var: String,
        /// Why it is needed.
        why: &'static str,
    },
    /// A variable is set to something that does not parse.
    #[error("invalid environment variable {var}={value:?}: {reason}")]
    Invalid {
        /// The variable's name.
        var: String,
        /// The value as given (never a secret: secrets are not parsed, so never echoed).
        value: String,
        /// What was expected.
        reason: String,
    },
}

/// The variables of one start-up (empty values count as unset).
#[derive(Debug, Clone)]
pub struct Env {
    vars: HashMap<String, String>,
    /// Whether this runs on Lambda (`AWS_LAMBDA_FUNCTION_NAME` is set).
    pub on_lambda: bool,
}

impl Env {
    /// The given variables.
    pub fn new(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let vars: HashMap<String, String> =
            vars.into_iter().filter(|(_, v)| !v.trim().is_empty()).map(|(k, v)| (k, v.trim().to_owned())).collect();
        let on_lambda = vars.contains_key("AWS_LAMBDA_FUNCTION_NAME");
        Self { vars, on_lambda }
    }

    /// One variable.
    pub fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    /// An area's scalars: the variables starting with `prefix`, by field name (`port` for
    /// `GROUNDWORK_PORT`).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the variable whose value does not parse.
    pub fn area<T: DeserializeOwned>(&self, prefix: &'static str) -> Result<T, ConfigError> {
        envy::prefixed(prefix).from_iter(self.vars.clone()).map_err(|e| from_envy(prefix, &e, self))
    }
}

fn from_envy(prefix: &str, e: &envy::Error, env: &Env) -> ConfigError {
    match e {
        envy::Error::MissingValue(field) => {
            ConfigError::Missing { var: format!("{prefix}{}", field.to_ascii_uppercase()), why: "it has no default" }
        }
        // envy says "<reason> while parsing value '<value>' provided by <field>".
        envy::Error::Custom(message) => {
            let (reason, field) = match message.rsplit_once(" provided by ") {
                Some((head, field)) => (head.split(" while parsing value").next().unwrap_or(head), field),
                None => (message.as_str(), ""),
            };
            let var = format!("{prefix}{}", field.to_ascii_uppercase());
            let value = env.get(&var).unwrap_or_default();
            ConfigError::Invalid { value: value.chars().take(200).collect(), reason: reason.to_owned(), var }
        }
    }
}

impl Env {
    /// A variable naming one of a set of choices (`T::from_str`), or `default` when unset.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the variable and the choices.
    pub fn choice<T: std::str::FromStr<Err = Choices>>(&self, var: &'static str, default: T) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(value) => value.parse().map_err(|choices: Choices| ConfigError::Invalid {
                var: var.to_owned(),
                value: value.chars().take(200).collect(),
                reason: format!("expected {choices}"),
            }),
        }
    }
}

/// Checks that the value of `var` is at least `min` (a zero timeout, body limit or number of
/// attempts would make the system refuse everything).
///
/// # Errors
/// [`ConfigError::Invalid`] naming the variable.
pub fn at_least<T: PartialOrd + std::fmt::Display>(var: &'static str, value: T, min: T) -> Result<T, ConfigError> {
    within(var, value >= min, value, || format!("expected at least {min}"))
}

/// Checks that the value of `var` is at most `max` (where a larger value weakens a security
/// property, such as a longer refresh-token reuse interval).
///
/// # Errors
/// [`ConfigError::Invalid`] naming the variable.
pub fn at_most<T: PartialOrd + std::fmt::Display>(var: &'static str, value: T, max: T) -> Result<T, ConfigError> {
    within(var, value <= max, value, || format!("expected at most {max}"))
}

fn within<T: std::fmt::Display>(
    var: &'static str,
    ok: bool,
    value: T,
    reason: impl FnOnce() -> String,
) -> Result<T, ConfigError> {
    if ok {
        Ok(value)
    } else {
        Err(ConfigError::Invalid { var: var.to_owned(), value: value.to_string(), reason: reason() })
    }
}

impl Env {
    /// A variable that must be an absolute `http(s)` URL (no trailing slash kept), or
    /// `default` when unset.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the variable.
    pub fn url(&self, var: &'static str, default: Option<String>) -> Result<Option<String>, ConfigError> {
        let Some(value) = self.get(var).or(default) else { return Ok(None) };
        match reqwest::Url::parse(&value) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                Ok(Some(value.trim_end_matches('/').to_owned()))
            }
            _ => Err(ConfigError::Invalid {
                var: var.to_owned(),
                value: value.chars().take(200).collect(),
                reason: "expected an absolute http(s) URL".into(),
            }),
        }
    }
}

/// A value that is not one of the choices; holds them, for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choices(pub &'static [&'static str]);

impl std::fmt::Display for Choices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, choice) in self.0.iter().enumerate() {
            let sep = match i {
                0 => "",
                i if i + 1 == self.0.len() => " or ",
                _ => ", ",
            };
            write!(f, "{sep}`{choice}`")?;
        }
        Ok(())
    }
}

/// Implements `FromStr` (with [`Choices`] as the error) for a setting chosen by name:
/// `choices!(StoreBackend { "embedded" => Embedded, "dynamodb" => DynamoDb });`.
#[macro_export]
macro_rules! choices {
    ($ty:ident { $($name:literal => $variant:ident),+ $(,)? }) => {
        impl ::std::str::FromStr for $ty {
            type Err = $crate::settings::Choices;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(Self::$variant),)+
                    _ => Err($crate::settings::Choices(&[$($name),+])),
                }
            }
        }
    };
}

/// A setting asks for a part of `shared` that this function was built without (see the
/// features in `shared/Cargo.toml`).
#[allow(dead_code, reason = "unused when every feature is on")]
pub fn not_built(setting: &str, feature: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{setting} needs the `{feature}` feature of the shared crate, which this function was built without: \
         add it to the function's `shared` dependency"
    )
}
