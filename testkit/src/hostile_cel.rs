//! Hostile CEL: expressions a tenant could write as a field transform or a filter to
//! exhaust the server's memory, time or stack. Each must be refused when saved (a 400)
//! or fail the record it is applied to; none may succeed. Shared by the security suite
//! and the CLI test that measures the server's peak memory.

/// Sixteen `a`s: a literal that multiplies by 16 when it replaces each of its letters.
const X: &str = "'aaaaaaaaaaaaaaaa'";

/// Why an expression is hostile, and the expression.
pub struct Hostile {
    pub kind: &'static str,
    pub source: String,
}

fn h(kind: &'static str, source: impl Into<String>) -> Hostile {
    Hostile {
        kind,
        source: source.into(),
    }
}

/// `'a'` doubled `times` times by replacing each letter with two.
fn doubled(times: usize) -> String {
    format!("'a'{}", ".replace('a', 'aa')".repeat(times))
}

/// [`X`] multiplied by 16, `times` times (16^(times+1) bytes).
fn sixteenfold(times: usize) -> String {
    format!("{X}{}", format!(".replace('a', {X})").repeat(times))
}

/// `seed.replace('', seed.replace('', …))`, `depth` levels deep.
fn nested_replace(seed: &str, depth: usize) -> String {
    let mut source = seed.to_owned();
    for _ in 0..depth {
        source = format!("{seed}.replace('', {source})");
    }
    source
}

fn repeated(unit: &str, times: usize, last: &str) -> String {
    format!("{}{last}", unit.repeat(times))
}

fn growth() -> Vec<Hostile> {
    let big = sixteenfold(3); // 64 KiB
    let list = |n: usize| vec![big.as_str(); n].join(", ");
    vec![
        h("string doubling", doubled(24)),
        h("string doubling", doubled(32)),
        h("string doubling", doubled(48)),
        h("string doubling", format!("value + {}", doubled(30))),
        h(
            "string doubling",
            format!("size({}) > 0 ? 'x' : 'y'", doubled(40)),
        ),
        h("string growth", sixteenfold(5)),
        h("string growth", sixteenfold(8)),
        h("string growth", format!("{}.upperAscii()", sixteenfold(6))),
        h("string growth", format!("{}.reverse()", sixteenfold(6))),
        h("nested replace", nested_replace("'abcdefgh'", 8)),
        h("nested replace", nested_replace("'abcdefghijklmnop'", 6)),
        h("nested replace", nested_replace("value", 8)),
        h(
            "nested replace",
            format!(
                "(value + 'xyz').replace('', {})",
                nested_replace("'0123456789'", 7)
            ),
        ),
        h("concatenation", vec![big.as_str(); 20].join(" + ")),
        h("join", format!("[{}].join()", list(20))),
        h("join", format!("[{}].join({big})", list(3))),
        h(
            "format",
            format!("'{}'.format([{}])", "%s".repeat(20), list(20)),
        ),
        h(
            "format",
            format!("'%s%s'.format([{big}, {}])", sixteenfold(7)),
        ),
        h(
            "contains",
            format!("{}.contains('b') ? 'x' : 'y'", sixteenfold(7)),
        ),
        h(
            "regex",
            format!("{}.matches('^(a+)+$') ? 'x' : 'y'", sixteenfold(7)),
        ),
        h("regex", "'a'.matches('((a{100}){100}){100}') ? 'x' : 'y'"),
        h("map key lookup", format!("record[{}]", sixteenfold(7))),
    ]
}

fn lists() -> Vec<Hostile> {
    vec![
        h(
            "long list",
            format!("size({}.split('')) > 0 ? 'x' : 'y'", sixteenfold(4)),
        ),
        h("long list", format!("{}.split('a')[0]", sixteenfold(5))),
        h(
            "long list",
            format!("{}.split('').join('-')", sixteenfold(4)),
        ),
        h(
            "long list",
            format!("'b' in {}.split('') ? 'x' : 'y'", sixteenfold(4)),
        ),
        h(
            "long list",
            format!(
                "size({0}.split('') + {0}.split('')) > 1 ? 'x' : 'y'",
                sixteenfold(3)
            ),
        ),
        h("list result", "[value, value]"),
        h("map result", "{'a': value}"),
        h("duplicate map keys", "{'a': 1, 'a': 2}['a']"),
    ]
}

fn depth() -> Vec<Hostile> {
    vec![
        h("deep nesting", repeated("(", 200, &")".repeat(200))),
        h(
            "deep nesting",
            format!("{}1{}", "(".repeat(30), ")".repeat(30)),
        ),
        h(
            "deep nesting",
            format!("{}1{}", "[".repeat(100), "]".repeat(100)),
        ),
        h(
            "deep nesting",
            format!("{}1{}", "{'a': ".repeat(40), "}".repeat(40)),
        ),
        h("deep nesting", repeated("!", 900, "true")),
        h("deep nesting", repeated("-", 900, "1")),
        h("deep nesting", repeated("- ", 500, "1")),
        h("deep nesting", repeated("1 + ", 450, "1")),
        h("deep nesting", repeated("value + ", 200, "value")),
        h("deep nesting", repeated("2 * ", 450, "2")),
        h("deep nesting", repeated("true ? 1 : ", 150, "2")),
        h("deep nesting", format!("value{}", ".trim()".repeat(250))),
        h("deep nesting", format!("record{}", ".a".repeat(600))),
        h("deep nesting", format!("value{}", "[0]".repeat(400))),
        h("too long", format!("'{}'", "a".repeat(5000))),
        h("too long", repeated("value + ", 300, "value")),
    ]
}

fn refused() -> Vec<Hostile> {
    vec![
        h(
            "comprehension",
            "value.split('').map(c, c + c + c + c).join()",
        ),
        h(
            "comprehension",
            "[1, 2, 3].filter(x, x > 1).size() > 0 ? 'x' : 'y'",
        ),
        h(
            "comprehension",
            "value.split('').all(c, c == 'a') ? 'x' : 'y'",
        ),
        h(
            "comprehension",
            "value.split('').exists(c, c == 'a') ? 'x' : 'y'",
        ),
        h(
            "comprehension",
            "value.split('') . exists_one (c, c == 'a') ? 'x' : 'y'",
        ),
        h("unknown variable", "secrets.token"),
        h("unknown variable", "env.HOME"),
        h("unknown function", "timestamp('2020-01-01T00:00:00Z')"),
        h("unknown function", "strings.quote(value)"),
        h("bytes", "b'abc'"),
        h("overflow", "9223372036854775807 + 1"),
        h("overflow", "1 / 0"),
        h("overflow", "99999999999999999999999"),
        h("index", "value.substring(-1)"),
        h("index", "value.charAt(99999999)"),
        h("index", "value.split('@')[99]"),
    ]
}

/// At least fifty hostile expressions.
pub fn expressions() -> Vec<Hostile> {
    let mut all = growth();
    all.extend(lists());
    all.extend(depth());
    all.extend(refused());
    all
}
