//! Deserializers that also accept the string form environment variables arrive in.

use serde::{Deserialize, Deserializer, de::Error as _};

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Number(u64),
    String(String),
}

pub fn number<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match NumberOrString::deserialize(d)? {
        NumberOrString::Number(n) => Ok(n),
        NumberOrString::String(s) => s
            .trim()
            .parse()
            .map_err(|_| D::Error::custom(format!("`{s}` is not a whole number"))),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ListOrString {
    List(Vec<String>),
    String(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum BoolOrString {
    Bool(bool),
    String(String),
}

pub fn optional_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match BoolOrString::deserialize(d)? {
        BoolOrString::Bool(b) => Ok(Some(b)),
        BoolOrString::String(s) => match s.trim() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            "" => Ok(None),
            other => Err(D::Error::custom(format!("`{other}` is not true or false"))),
        },
    }
}

pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match ListOrString::deserialize(d)? {
        ListOrString::List(list) => list,
        ListOrString::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    })
}
