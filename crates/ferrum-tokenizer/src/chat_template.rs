//! Chat templates rendered with minijinja, set up to behave as transformers' Jinja environment
//! (`ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
//! extensions=[loopcontrols])`): the same whitespace control, Python string/dict methods
//! (minijinja-contrib's pycompat), and the same globals: `raise_exception`, `strftime_now`
//! and a `tojson` that writes `json.dumps` text (no HTML escaping, key order kept, `indent`).

use anyhow::{Result, anyhow};
use ferrum_pyfmt::{DumpOptions, dumps};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Serde, Value};
use minijinja::{Environment, Error, ErrorKind};
use serde_json::{Map, Value as Json};

use crate::strftime::{DateTime, strftime};

/// A model's chat templates, compiled once. Several are possible (transformers' named
/// templates, e.g. `default` and `tool_use`).
pub(crate) struct ChatTemplates {
    env: Environment<'static>,
    /// (name, source), in the order given.
    templates: Vec<(String, String)>,
    /// `bos_token`, `eos_token`, ... as strings, put in every render's context.
    special_tokens: Vec<(String, String)>,
}

impl std::fmt::Debug for ChatTemplates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplates")
            .field(
                "names",
                &self.templates.iter().map(|t| &t.0).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

fn strftime_now(format: String) -> String {
    strftime(&format, &DateTime::now())
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
fn tojson(value: &Value, ensure_ascii: Option<Value>, kwargs: Kwargs) -> Result<String, Error> {
    let bad = |what: &str| Error::new(ErrorKind::InvalidOperation, format!("tojson: {what}"));
    let ensure_ascii = match kwargs.get::<Option<Value>>("ensure_ascii")? {
        Some(v) => v.is_true(),
        None => ensure_ascii.is_some_and(|v| v.is_true()),
    };
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match (v.as_i64(), v.as_str()) {
            (Some(n), _) => Some(" ".repeat(n.max(0) as usize)),
            (None, Some(s)) => Some(s.to_string()),
            _ => return Err(bad("indent must be an integer or a string")),
        },
    };
    let separators = match kwargs.get::<Option<Value>>("separators")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => {
            let parts: Vec<String> = v
                .try_iter()?
                .map(|p| p.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("separators must be two strings"))?;
            match <[String; 2]>::try_from(parts) {
                Ok([item, key]) => Some((item, key)),
                Err(_) => return Err(bad("separators must be two strings")),
            }
        }
    };
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(value)
        .map_err(|e| bad(&format!("value is not JSON-serializable: {e}")))?;
    Ok(dumps(
        &json,
        &DumpOptions {
            ensure_ascii,
            indent,
            separators,
            sort_keys,
        },
    ))
}

impl ChatTemplates {
    /// Compiles the templates; `None` when there are none.
    pub(crate) fn new(
        templates: Vec<(String, String)>,
        special_tokens: Vec<(String, String)>,
    ) -> Result<Option<ChatTemplates>> {
        if templates.is_empty() {
            return Ok(None);
        }
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| anyhow!("chat template syntax config: {e}"))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        for (name, source) in &templates {
            env.add_template_owned(name.clone(), source.clone())
                .map_err(|e| anyhow!("chat template {name:?} does not compile: {e:#}"))?;
        }
        Ok(Some(ChatTemplates {
            env,
            templates,
            special_tokens,
        }))
    }

    /// The `bos_token`, `eos_token`, ... strings templates see.
    pub(crate) fn special_tokens(&self) -> &[(String, String)] {
        &self.special_tokens
    }

    /// The source of the template `render` uses when no tools are given.
    pub(crate) fn source(&self) -> Option<&str> {
        let name = self.pick(false);
        self.templates
            .iter()
            .find(|t| t.0 == name)
            .map(|t| t.1.as_str())
    }

    /// transformers' choice: `tool_use` when tools are given and it exists, else `default`,
    /// else the only (first) one.
    fn pick(&self, has_tools: bool) -> &str {
        let has = |n: &str| self.templates.iter().any(|t| t.0 == n);
        if has_tools && has("tool_use") {
            "tool_use"
        } else if has("default") {
            "default"
        } else {
            &self.templates[0].0
        }
    }

    /// Renders `messages` (an OpenAI-style array, passed through as is). The context is what
    /// transformers passes: `messages`, `tools` and `documents` (none unless given),
    /// `add_generation_prompt`, the special tokens, then every key of `extra`, with the keys
    /// of `extra.chat_template_kwargs` (if any) flattened in last.
    pub(crate) fn render(
        &self,
        messages: &Json,
        add_generation_prompt: bool,
        extra: Option<&Json>,
    ) -> Result<String> {
        let mut ctx = Map::new();
        ctx.insert("messages".into(), messages.clone());
        ctx.insert("tools".into(), Json::Null);
        ctx.insert("documents".into(), Json::Null);
        ctx.insert(
            "add_generation_prompt".into(),
            Json::Bool(add_generation_prompt),
        );
        for (k, v) in &self.special_tokens {
            ctx.insert(k.clone(), Json::String(v.clone()));
        }
        match extra {
            None | Some(Json::Null) => {}
            Some(Json::Object(extra)) => {
                for (k, v) in extra {
                    if k != "chat_template_kwargs" {
                        ctx.insert(k.clone(), v.clone());
                    }
                }
                match extra.get("chat_template_kwargs") {
                    Some(Json::Object(kw)) => {
                        ctx.extend(kw.iter().map(|(k, v)| (k.clone(), v.clone())))
                    }
                    None | Some(Json::Null) => {}
                    Some(_) => anyhow::bail!("chat_template_kwargs must be an object"),
                }
            }
            Some(_) => anyhow::bail!("chat template extra context must be a JSON object"),
        }
        let has_tools = match ctx.get("tools") {
            Some(Json::Array(t)) => !t.is_empty(),
            _ => false,
        };
        let name = self.pick(has_tools);
        let template = self
            .env
            .get_template(name)
            .map_err(|e| anyhow!("chat template {name:?}: {e}"))?;
        template
            .render(Value::from(Serde(&ctx)))
            // `{e}`, not `{e:#}`: the alternate form dumps every referenced variable (the whole
            // conversation) into the message.
            .map_err(|e| anyhow!("rendering chat template {name:?}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(source: &str) -> ChatTemplates {
        ChatTemplates::new(
            vec![("default".into(), source.into())],
            vec![("bos_token".into(), "<s>".into())],
        )
        .unwrap()
        .unwrap()
    }

    #[test]
    fn tojson_is_python_json_dumps() {
        let t = one("{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ 'a<b' | tojson }}");
        let out = t
            .render(
                &json!([]),
                false,
                Some(&json!({"x": {"z": 1, "a": [1.5, "é"]}})),
            )
            .unwrap();
        assert_eq!(
            out,
            "{\"z\": 1, \"a\": [1.5, \"é\"]}|{\n  \"z\": 1,\n  \"a\": [\n    1.5,\n    \"é\"\n  ]\n}|\"a<b\""
        );
    }

    #[test]
    fn raise_exception_fails_the_render_with_its_message() {
        let t = one("{{ raise_exception('roles must alternate') }}");
        let err = t.render(&json!([]), false, None).unwrap_err().to_string();
        assert!(err.contains("roles must alternate"), "{err}");
    }

    #[test]
    fn context_has_special_tokens_and_flattened_kwargs() {
        // Booleans print as Python does.
        let t = one("{{ bos_token }}{{ enable_thinking }}{{ tools is none }}{{ x }}");
        let extra = json!({"x": 1, "chat_template_kwargs": {"enable_thinking": false}});
        assert_eq!(
            t.render(&json!([]), true, Some(&extra)).unwrap(),
            "<s>FalseTrue1"
        );
    }

    #[test]
    fn trim_and_lstrip_blocks() {
        let t = one(
            "{% for m in messages %}\n  {% if true %}\n{{ m.content }}\n  {% endif %}\n{% endfor %}\n",
        );
        let msgs = json!([{"content": "a"}, {"content": "b"}]);
        assert_eq!(t.render(&msgs, false, None).unwrap(), "a\nb\n");
    }

    #[test]
    fn tool_use_template_is_picked_when_tools_are_given() {
        let t = ChatTemplates::new(
            vec![
                ("default".into(), "D".into()),
                ("tool_use".into(), "T".into()),
            ],
            vec![],
        )
        .unwrap()
        .unwrap();
        assert_eq!(t.render(&json!([]), false, None).unwrap(), "D");
        let tools = json!({"tools": [{"type": "function"}]});
        assert_eq!(t.render(&json!([]), false, Some(&tools)).unwrap(), "T");
    }
}
