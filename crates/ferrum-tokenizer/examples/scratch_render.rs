// TEMPORARY scratch (to be deleted): render a template file with a JSON context.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::Path::new(&args[1]);
    let ctx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&args[2]).unwrap()).unwrap();
    let tok = ferrum_tokenizer::Tokenizer::from_hf_dir(dir).unwrap();
    match tok.apply_chat_template(
        &ctx["messages"],
        ctx["add_generation_prompt"].as_bool().unwrap(),
        Some(&ctx["extra"]),
    ) {
        Ok(s) => print!("{s}"),
        Err(e) => print!("ERROR: {e:#}"),
    }
}
