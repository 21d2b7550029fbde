//! `--config FILE.yaml` as vLLM expands it.

use super::*;

/// A test's own scratch folder (tests run in parallel), removed when the test ends.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("ferrum-vllm-flags-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write_config(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn config_file_expands_like_vllm() {
    let scratch = Scratch::new("expands");
    let path = scratch.write_config(
        "serve.yaml",
        "port: 12323\n\
         max_model_len: 16k\n\
         enable-prefix-caching: false\n\
         enable-auto-tool-choice: true\n\
         disable-log-stats: false\n\
         trust-remote-code: yes\n\
         tool-call-parser: hermes\n\
         served-model-name: [a, b]\n\
         api-key: []\n\
         root-path: ~\n\
         default-chat-template-kwargs:\n  enable_thinking: false\n\
         model: from-config\n\
         tensor-parallel-size: 4\n",
    );
    // The command line wins over the file (tp 1 over tp 4), the positional model over the
    // file's.
    let n = normalize_serve_argv(
        words(&format!("m --config {path} -tp 1 --port 8000")),
        &ferrum(),
    )
    .unwrap();
    assert_eq!(
        n.argv,
        words(
            r#"m --max-model-len 16000 --no-enable-prefix-caching --enable-auto-tool-choice
               --tool-call-parser hermes --served-model-name a b
               --default-chat-template-kwargs {"enable_thinking":false} --port 8000"#
        )
    );
    assert_eq!(
        n.warnings,
        [
            "`--trust-remote-code` accepted: ferrum runs no model code from the hub, so it has no effect"
        ]
    );
    // No positional model: the file's is used.
    let n = normalize_serve_argv(words(&format!("--config={path} -tp 1")), &ferrum()).unwrap();
    assert_eq!(n.argv[..2], words("--port 12323")[..]);
    assert!(
        n.argv.windows(2).any(|w| w == words("--model from-config")),
        "{:?}",
        n.argv
    );
    // Without the command line's -tp 1, the file's 4 is refused.
    assert_eq!(
        normalize_serve_argv(words(&format!("m --config {path}")), &ferrum()),
        Err(
            "not supported yet: --tensor-parallel-size 4 (ferrum runs a model on one device)"
                .into()
        )
    );
}

#[test]
fn config_file_errors_name_the_file() {
    let scratch = Scratch::new("errors");
    let e = norm("m --config /nonexistent/serve.yaml").unwrap_err();
    assert!(
        e.starts_with("--config /nonexistent/serve.yaml: cannot read the config file: "),
        "{e}"
    );
    err(
        "m --config serve.json",
        "--config serve.json: the config file must be a .yaml or .yml file (as in vLLM)",
    );
    err("m --config", "--config needs a file name");
    err(
        "m --config a.yaml --config b.yaml",
        "--config given more than once; vLLM reads one config file",
    );
    let bad = scratch.write_config("bad.yaml", "port: [1\n");
    assert!(
        norm(&format!("m --config {bad}"))
            .unwrap_err()
            .starts_with(&format!("--config {bad}: not valid YAML"))
    );
    let list = scratch.write_config("list.yml", "- port\n");
    err(
        &format!("m --config {list}"),
        &format!("--config {list}: expected a mapping of flag names to values"),
    );
    let nested = scratch.write_config("nested.yaml", "config: other.yaml\n");
    err(
        &format!("m --config {nested}"),
        &format!("--config {nested}: a config file cannot name another one (`config`)"),
    );
    let empty = scratch.write_config("empty.yaml", "");
    ok(&format!("m --config {empty}"), "m", &[]);
    let removed = scratch.write_config(
        "removed.yaml",
        "swap-space: 4\nuse-v2-block-manager: true\n",
    );
    ok(
        &format!("m --config {removed}"),
        "m",
        &[
            "`--swap-space` was removed from vLLM; ignored",
            "`--use-v2-block-manager` was removed from vLLM; ignored",
        ],
    );
}

// -- every vLLM flag lands in a class
