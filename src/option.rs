//! Option lines from the registry, which go into haproxy.cfg as written (and server options into the `add
//! server` runtime command): [`check_option`] refuses any that could leave its place there: start a section,
//! bind a port, end the line or the command, or fail the whole file. Pure.

/// Where an option line goes in haproxy.cfg, which decides what could take it out of its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A line of its own in the service's `listen` section (`listen_options`).
    Listen,
    /// Words appended to a `server` line, and to the `add server` runtime command that adds the server at run
    /// time (`server_options`, Nerve's `haproxy_server_options`).
    Server,
    /// Words appended to a service's own `bind` line (`bind_options`: `ssl crt ...`, `accept-proxy`).
    Bind,
}

/// Why an option line was refused: what would take it out of its section, its server line or its runtime
/// command, and what would fail the whole haproxy.cfg (every service's reload) rather than this service alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("is empty")]
    Empty,
    /// A control character (tab aside) or a Unicode line or paragraph separator, at a byte offset.
    #[error("contains {} at byte {at}; an option must be one line of text", char_name(*character))]
    Character { character: char, at: usize },
    /// Its first word starts a section (the keyword as HAProxy spells it): the lines after it would leave the
    /// service's `listen` section, up to the next service's (`global` + `stats socket`: an admin socket).
    #[error(
        "starts a `{0}` section, which would take the lines after it out of the service's listen section"
    )]
    Section(&'static str),
    /// A `bind` line: a service listens only on its own port, which proxymgr binds and passes to HAProxy.
    #[error("binds a port, which only proxymgr does (on the service's `port`)")]
    Bind,
    /// `.if`, `.endif`, `.alert` and the like (HAProxy 2.4+): they act on the lines around them, other
    /// services' included, or stop HAProxy.
    #[error("is the directive `{0}`, which acts on the lines around it")]
    Directive(String),
    /// A first word HAProxy would unquote, unescape, expand or read as a scope (`"glob"al`, `[x]`): what it
    /// stands for cannot be checked, and no keyword needs it.
    #[error("starts with {0:?}, which is not a plain keyword")]
    NotAKeyword(String),
    #[error("has an unmatched {0} quote, which fails the whole haproxy.cfg")]
    UnmatchedQuote(char),
    #[error("has `\\x` without two hex digits after it, which fails the whole haproxy.cfg")]
    HexEscape,
    /// `$` inside double quotes: HAProxy would put proxymgr's environment there (and a malformed name fails the
    /// whole file).
    #[error("reads an environment variable (`$` inside double quotes)")]
    Environment,
    #[error("has more than {MAX_WORDS} words, which fails the whole haproxy.cfg")]
    TooManyWords,
    /// `;` ends a command of HAProxy's runtime API: the rest would be a command of its own, at admin level.
    #[error("contains `;`, which would end the `add server` runtime command and start another")]
    CommandSeparator,
    /// A trailing backslash escapes the newline that ends the `add server` runtime command.
    #[error("ends with a backslash, which would join the next runtime command to `add server`")]
    TrailingBackslash,
    /// A last word `<<...` makes HAProxy's runtime API read the next commands as this one's payload.
    #[error(
        "has a word starting with `<<`, which would make the runtime API read the next commands as data"
    )]
    Payload,
    /// `#` starts a comment on a `server` line in haproxy.cfg but not in `add server`: the same registration
    /// would give two different servers (and the options after it on the line would vanish from the file).
    #[error("contains `#`, which haproxy.cfg reads as a comment and `add server` does not")]
    Comment,
}

/// Every keyword that starts a section of haproxy.cfg in HAProxy 1.8 to 3.4: the names the sources register
/// with `cfg_register_section()` / `REGISTER_CONFIG_SECTION()` (`src/cfgparse.c`, `src/cache.c`, `src/sink.c`,
/// `src/log.c`, `src/flt_spoe.c`, `addons/ot/src/parser.c`, ...), from the release tarballs 1.8.0, 2.4.0,
/// 2.8.0, 3.0.0, 3.2.0 and 3.4.0 (the comment says the first of these that has it). The SPOE and OpenTracing
/// ones are meant for those filters' own files, but HAProxy registers them for haproxy.cfg too.
pub const SECTION_KEYWORDS: &[&str] = &[
    "acme",           // 3.2
    "backend",        // 1.8
    "cache",          // 1.8
    "crt-store",      // 3.0
    "defaults",       // 1.8
    "fcgi-app",       // 2.4
    "frontend",       // 1.8
    "global",         // 1.8
    "healthcheck",    // 3.4
    "http-errors",    // 2.4
    "listen",         // 1.8
    "log-forward",    // 2.4
    "log-profile",    // 3.2
    "mailers",        // 1.8
    "namespace_list", // 1.8
    "ot-group",       // 2.4, addons/ot
    "ot-scope",       // 2.4, addons/ot
    "ot-tracer",      // 2.4, addons/ot
    "peers",          // 1.8
    "program",        // 2.4 (gone in 3.4)
    "resolvers",      // 1.8
    "ring",           // 2.4
    "spoe-agent",     // 1.8
    "spoe-group",     // 1.8
    "spoe-message",   // 1.8
    "traces",         // 3.2
    "userlist",       // 1.8
];

/// HAProxy's `MAX_LINE_ARGS` (1.8 to 3.4): a line with more words fails the file.
const MAX_WORDS: usize = 64;

/// Checks one option line for its place. Listen options: the first word may not start a section, be `bind`
/// or a `.` directive, or be anything but a plain keyword (HAProxy matches section keywords exactly; this
/// compares case-insensitively, which refuses only what HAProxy would reject as an unknown keyword anyway).
/// Server options: a section keyword there is only a word of a `server` line, but the line also goes to the
/// runtime API as `add server`, where `;`, a trailing backslash and `<<` would end or extend that command.
/// Both: one line of text, and nothing HAProxy's tokenizer rejects.
pub fn check_option(line: &str, place: Place) -> Result<(), OptionError> {
    if let Some((at, character)) = stray_character(line) {
        return Err(OptionError::Character { character, at });
    }
    if line.trim().is_empty() {
        return Err(OptionError::Empty);
    }
    let words = words(line)?;
    match place {
        Place::Listen => check_keyword(words.first().copied())?,
        Place::Bind => {
            if line.contains('#') {
                return Err(OptionError::Comment);
            }
        }
        Place::Server => {
            if line.contains(';') {
                return Err(OptionError::CommandSeparator);
            }
            if line.contains('#') {
                return Err(OptionError::Comment);
            }
            let trailing = line.len() - line.trim_end_matches('\\').len();
            if trailing % 2 == 1 {
                return Err(OptionError::TrailingBackslash);
            }
            if line.split([' ', '\t']).any(|word| word.starts_with("<<")) {
                return Err(OptionError::Payload);
            }
        }
    }
    Ok(())
}

/// The section keyword `line` starts with, if it starts one (compared as `check_option` does).
pub fn starts_section(line: &str) -> Option<&'static str> {
    let keyword = line.split_whitespace().next()?.to_ascii_lowercase();
    SECTION_KEYWORDS.iter().copied().find(|&s| s == keyword)
}

/// The first word of a listen option (none for a comment).
fn check_keyword(first: Option<&str>) -> Result<(), OptionError> {
    let Some(word) = first else { return Ok(()) };
    if word.starts_with('.') {
        return Err(OptionError::Directive(word.to_string()));
    }
    if !word.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')) {
        return Err(OptionError::NotAKeyword(word.to_string()));
    }
    let keyword = word.to_ascii_lowercase();
    if let Some(section) = SECTION_KEYWORDS.iter().find(|&&s| s == keyword) {
        return Err(OptionError::Section(section));
    }
    if keyword == "bind" {
        return Err(OptionError::Bind);
    }
    Ok(())
}

/// The words of `line` as HAProxy's config parser splits them (1.8's `readcfgfile`, 2.x and 3.x's
/// `parse_line`), as written (quotes and escapes kept), up to an unquoted `#`; or what in it would make that
/// parser fail the file: an unmatched quote, `\x` without two hex digits, and (our rule) `$` in double quotes.
fn words(line: &str) -> Result<Vec<&str>, OptionError> {
    let (mut words, mut start, mut end) = (Vec::new(), None, line.len());
    let (mut squote, mut dquote) = (false, false);
    let mut chars = line.char_indices();
    while let Some((at, c)) = chars.next() {
        let quoted = squote || dquote;
        if !quoted && matches!(c, ' ' | '\t') {
            words.extend(start.take().map(|s| &line[s..at]));
            continue;
        }
        if !quoted && c == '#' {
            end = at;
            break;
        }
        start.get_or_insert(at);
        match c {
            '\'' if !dquote => squote = !squote,
            '"' if !squote => dquote = !dquote,
            '$' if dquote => return Err(OptionError::Environment),
            // A backslash escapes the next character (or is taken as it is); only `\x` needs more.
            '\\' if !squote => {
                if let Some((_, 'x')) = chars.next() {
                    let hex = chars.next().zip(chars.next());
                    if !hex.is_some_and(|((_, a), (_, b))| a.is_ascii_hexdigit() && b.is_ascii_hexdigit()) {
                        return Err(OptionError::HexEscape);
                    }
                }
            }
            _ => {}
        }
    }
    if squote || dquote {
        return Err(OptionError::UnmatchedQuote(if squote { '\'' } else { '"' }));
    }
    words.extend(start.map(|s| &line[s..end]));
    if words.len() > MAX_WORDS {
        return Err(OptionError::TooManyWords);
    }
    Ok(words)
}

/// The first character that has no place inside a line of haproxy.cfg, and its byte offset: every control
/// character (Unicode's Cc: C0, DEL and C1, so CR, LF, NUL and U+0085 too) but tab, and U+2028 and U+2029.
/// CR, LF and NUL end a line for HAProxy's parser; the others make a word no keyword matches (or, for U+2028
/// and U+2029, a line break to the people and tools that read the file), so the whole file fails. Tab stays:
/// HAProxy's parser and its runtime API split words on it as on a space (`isspace()`, `strspn(p, " \t")`).
pub fn stray_character(line: &str) -> Option<(usize, char)> {
    line.char_indices().find(|&(_, c)| (c.is_control() && c != '\t') || matches!(c, '\u{2028}' | '\u{2029}'))
}

/// A character [`stray_character`] finds, named for a person: `a newline (U+000A)`.
pub fn char_name(c: char) -> String {
    let name = match c {
        '\n' => "a newline",
        '\r' => "a carriage return",
        '\0' => "a NUL byte",
        '\u{85}' => "a next-line character",
        '\u{2028}' => "a line separator",
        '\u{2029}' => "a paragraph separator",
        _ => "a control character",
    };
    format!("{name} (U+{:04X})", u32::from(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_lines_are_refused_with_their_reason() {
        use OptionError::*;
        use Place::{Listen, Server};
        let character = |character, at| Character { character, at };
        let many = |n| vec!["w"; n].join(" ");
        let cases = [
            // Out of the listen section.
            ("global", Listen, Err(Section("global"))),
            ("\tGlobal", Listen, Err(Section("global"))),
            ("LISTEN x", Listen, Err(Section("listen"))),
            ("backend evil # a comment", Listen, Err(Section("backend"))),
            ("bind :8443", Listen, Err(Bind)),
            ("  BIND 0.0.0.0:1", Listen, Err(Bind)),
            (".if 1", Listen, Err(Directive(".if".into()))),
            (".endif", Listen, Err(Directive(".endif".into()))),
            ("\"global\"", Listen, Err(NotAKeyword("\"global\"".into()))),
            ("glob\\al", Listen, Err(NotAKeyword("glob\\al".into()))),
            ("'bind' :80", Listen, Err(NotAKeyword("'bind'".into()))),
            ("[scope]", Listen, Err(NotAKeyword("[scope]".into()))),
            // Out of the line, or failing the whole file.
            ("mode http\nglobal", Listen, Err(character('\n', 9))),
            ("mode http\r", Listen, Err(character('\r', 9))),
            ("mode\0", Listen, Err(character('\0', 4))),
            ("mode http\u{2028}global", Listen, Err(character('\u{2028}', 9))),
            ("\u{2029}global", Listen, Err(character('\u{2029}', 0))),
            ("mode http\u{85}", Listen, Err(character('\u{85}', 9))),
            ("mode\u{1b}[0m", Listen, Err(character('\u{1b}', 4))),
            ("mode\u{b}http", Listen, Err(character('\u{b}', 4))),
            ("mode\u{c}http", Listen, Err(character('\u{c}', 4))),
            ("mode http\u{7f}", Listen, Err(character('\u{7f}', 9))),
            ("   ", Listen, Err(Empty)),
            ("http-request set-header X \"a b", Listen, Err(UnmatchedQuote('"'))),
            ("acl a hdr(x) -m str 'x", Listen, Err(UnmatchedQuote('\''))),
            ("http-request set-header X \\x4", Listen, Err(HexEscape)),
            ("http-request set-header X \"$HOME\"", Listen, Err(Environment)),
            ("\"${X}\"", Listen, Err(Environment)),
            (&many(65), Listen, Err(TooManyWords)),
            // What stays in place.
            ("mode\thttp", Listen, Ok(())),
            ("# a comment, \"unmatched", Listen, Ok(())),
            ("bind-process 1", Listen, Ok(())),
            ("stats socket /tmp/x.sock", Listen, Ok(())),
            ("http-request set-header X \"it's #1\"", Listen, Ok(())),
            ("http-request set-header X \"\\$5\" # \"", Listen, Ok(())),
            ("http-request set-header X $5\\x41\\\"", Listen, Ok(())),
            (&many(64), Listen, Ok(())),
            // Server options: out of the line, or out of the `add server` runtime command.
            ("check\ninter 1", Server, Err(character('\n', 5))),
            ("check inter 2000\u{2028}", Server, Err(character('\u{2028}', 16))),
            ("check; disable frontend web", Server, Err(CommandSeparator)),
            ("check # inter 1s", Server, Err(Comment)),
            ("option httpchk # a comment", Listen, Ok(())),
            ("check\\", Server, Err(TrailingBackslash)),
            ("check <<", Server, Err(Payload)),
            ("<<EOF", Server, Err(Payload)),
            ("cookie \"a", Server, Err(UnmatchedQuote('"'))),
            ("check\\\\", Server, Ok(())),
            ("global", Server, Ok(())),
            ("check\tinter 2000 backup", Server, Ok(())),
        ];
        for (line, place, expected) in cases {
            assert_eq!(check_option(line, place), expected, "{line:?} in {place:?}");
        }
        for &section in SECTION_KEYWORDS {
            assert_eq!(check_option(&format!("{section} x"), Listen), Err(Section(section)));
            assert_eq!(check_option(&section.to_uppercase(), Listen), Err(Section(section)));
        }
    }
}
