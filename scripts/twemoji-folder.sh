#!/usr/bin/env bash
# Builds a class-labelled image folder for `bns train --dataset images:DIR` from the Twemoji PNGs
# that the npm package emoji-datasource-twitter 16.0.0 installs: one sub-folder per emoji
# category (smileys, animals, food, flags), one 64×64 PNG per emoji (skin-tone variants left
# out), named by its short name. `bns train --size 32` resizes them to 32×32 when it reads them.
#
#   scripts/twemoji-folder.sh OUT_DIR [PACKAGE_DIR]
#
# PACKAGE_DIR is the installed package (default: node_modules/emoji-datasource-twitter, else it is
# installed with `npm install --no-save` into target/twemoji-npm). Nothing is downloaded at
# training time.
#
# Licences: the Twemoji graphics are © Twitter, Inc. and other contributors, CC-BY 4.0
# (https://creativecommons.org/licenses/by/4.0/; the package's README points to Twemoji's
# LICENSE-GRAPHICS); the package's code and emoji.json are MIT (Cal Henderson). A model trained
# on these images, and its samples, should carry the attribution "Twemoji by Twitter, Inc. and
# contributors, CC-BY 4.0".
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
out=$1
package=${2:-}
version=16.0.0
if [ -z "$package" ]; then
  if [ -f node_modules/emoji-datasource-twitter/emoji.json ]; then
    package=node_modules/emoji-datasource-twitter
  else
    prefix=target/twemoji-npm
    package=$prefix/node_modules/emoji-datasource-twitter
    if [ ! -f "$package/emoji.json" ]; then
      echo "installing emoji-datasource-twitter@$version into $prefix (70 MB)" >&2
      mkdir -p "$prefix"
      npm install --no-save --no-audit --no-fund --prefix "$prefix" "emoji-datasource-twitter@$version" >&2
    fi
  fi
fi
if [ ! -f "$package/emoji.json" ] || [ ! -d "$package/img/twitter/64" ]; then
  echo "$package: not an emoji-datasource-twitter package (no emoji.json or img/twitter/64)" >&2
  exit 1
fi
if [ -e "$out" ] && [ -n "$(ls -A "$out")" ]; then
  echo "$out: exists and is not empty; give a new folder" >&2
  exit 1
fi
mkdir -p "$out"

# emoji.json lists every emoji with its category, short name and image file.
node - "$package" "$out" <<'EOF'
const fs = require('fs');
const path = require('path');
const [pkg, out] = process.argv.slice(2);
const classes = {
  'Smileys & Emotion': 'smileys',
  'Animals & Nature': 'animals',
  'Food & Drink': 'food',
  'Flags': 'flags',
};
const emoji = JSON.parse(fs.readFileSync(path.join(pkg, 'emoji.json'), 'utf8'));
const counts = {};
for (const e of emoji) {
  const folder = classes[e.category];
  if (!folder || !e.has_img_twitter) continue;
  const source = path.join(pkg, 'img', 'twitter', '64', e.image);
  if (!fs.existsSync(source)) continue;
  const name = e.short_name.replace(/[^A-Za-z0-9_-]/g, '_');
  fs.mkdirSync(path.join(out, folder), { recursive: true });
  fs.copyFileSync(source, path.join(out, folder, `${name}.png`));
  counts[folder] = (counts[folder] ?? 0) + 1;
}
for (const [folder, n] of Object.entries(counts).sort()) console.log(`${out}/${folder}: ${n} images`);
EOF
cat > "$out/SOURCE.txt" <<EOF
Twemoji 64×64 PNGs from the npm package emoji-datasource-twitter@$version (img/twitter/64),
sorted into folders by the emoji category in its emoji.json.
Graphics: Twemoji, © Twitter, Inc. and other contributors, CC-BY 4.0
(https://creativecommons.org/licenses/by/4.0/). Package code and emoji.json: MIT (Cal Henderson).
EOF
