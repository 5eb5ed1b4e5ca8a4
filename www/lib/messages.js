// How the page and the widget word what went wrong: at most ~40 characters of a value they were
// given (an address or an attribute may hold a 300-digit number), and the short reason a status
// line gives for a failure whose whole message is shown in the error box.

/** `text` as a message quotes it: at most `limit` characters, cut with "…". */
export function quoted(text, limit = 40) {
  const chars = [...String(text)];
  return chars.length > limit ? `${chars.slice(0, limit - 1).join('')}…` : chars.join('');
}

/** The first clause of an error message (up to its first "; ", ". " or line break, without the
 * final period), a URL in it shortened to its file name, at most `limit` characters, cut after a
 * word: what a status line says of a failure. */
export function shortReason(message, limit = 80) {
  const clause = String(message).split(/(?<=\.)\s|;\s|\n/)[0].replace(/\.$/, '')
    .replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s]*\/(?=[^\s/])/gi, '');
  if ([...clause].length <= limit) return clause;
  const cut = quoted(clause, limit).slice(0, -1);
  const space = cut.lastIndexOf(' ');
  return `${(space > limit / 2 ? cut.slice(0, space) : cut).replace(/[:;,]$/, '')}…`;
}
