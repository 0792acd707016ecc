package awssts

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// STS input limits (AssumeRole API reference). Lengths are counted the way
// AWS counts them, in UTF-16 code units, which matters only for characters
// outside the Basic Multilingual Plane.
const (
	minNameLen           = 2
	maxSessionNameLen    = 64
	maxSourceIdentityLen = 64
	maxTagKeyLen         = 128
	maxTagValueLen       = 256
	maxTags              = 50
)

// hashSuffixLen is the length of "-" plus 8 hex digits appended when a value
// is truncated.
const hashSuffixLen = 9

// SanitizeSessionName turns any string into a valid STS RoleSessionName:
// characters [A-Za-z0-9_+=,.@-], 2 to 64 of them. It never fails.
//
//   - "/" becomes "@", so "acme/app" reads "acme@app". "@" is used rather than
//     "." because neither GitHub nor GitLab allow "@" in a repository or group
//     path while both allow ".": the mapping stays one-to-one for repository
//     paths, which matters when a role's trust policy conditions on the
//     session name.
//   - Every other disallowed character (space, ":", "#", non-ASCII, invalid
//     UTF-8) becomes "-". That mapping is lossy, so conditions that must be
//     exact belong on session tags, which keep "/" and ":" as they are.
//   - A result over 64 characters is cut and ends in "-" plus 8 hex digits of
//     the SHA-256 of the raw input, so two long names that share a prefix
//     stay distinguishable in CloudTrail.
//   - A result under 2 characters is padded with "_".
func SanitizeSessionName(s string) string {
	return sanitizeName(s, maxSessionNameLen)
}

// SanitizeSourceIdentity turns any string into a valid STS SourceIdentity:
// the same rules and mapping as SanitizeSessionName (2 to 64 characters of
// [A-Za-z0-9_+=,.@-]). STS also refuses a source identity that starts with
// "aws:"; the result never can, because ":" is not an allowed character and
// is replaced.
func SanitizeSourceIdentity(s string) string {
	return sanitizeName(s, maxSourceIdentityLen)
}

// SanitizeTags turns claim name/value pairs into valid STS session tags. It
// never fails; it drops what cannot be sent.
//
//   - Keys and values keep letters, numbers and the characters _ . : / = + - @
//     in any script; every Unicode space becomes an ASCII space; any other
//     character becomes "_".
//   - A key is 1 to 128 characters, a value 0 to 256; longer ones are cut and
//     end in "-" plus 8 hex digits of the SHA-256 of the raw text. A tag whose
//     key is empty is dropped.
//   - A key starting with the reserved prefix "aws:" (any case) has that colon
//     replaced: "aws:x" is sent as "aws_x".
//   - Keys are unique regardless of case: the first tag wins, later ones with
//     the same key (after sanitising) are dropped.
//   - At most 50 tags are kept, the first 50.
//
// One limit cannot be checked here: STS packs the inline session policy and
// the session tags into a binary form with its own size limit, and refuses
// the call with PackedPolicyTooLarge when they do not fit. That arrives as
// an *UpstreamError; the fix is fewer or shorter tags or a shorter policy.
func SanitizeTags(tags []Tag) []Tag {
	var out []Tag
	for _, t := range tags {
		if len(out) == maxTags {
			break
		}
		key := sanitizeTagText(t.Key, maxTagKeyLen)
		if key == "" {
			continue
		}
		key = unreserve(key)
		if hasKeyFold(out, key) {
			continue
		}
		out = append(out, Tag{Key: key, Value: sanitizeTagText(t.Value, maxTagValueLen)})
	}
	return out
}

// unreserve replaces the colon of a leading "aws:". The comparison folds
// case the Unicode way (so "AwS:" and "aſ:"-style look-alikes count), since
// AWS's own check is case-insensitive and runs on the JVM.
func unreserve(key string) string {
	end := 0
	for i := range 4 {
		r, size := utf8.DecodeRuneInString(key[end:])
		if size == 0 || !strings.EqualFold(string(r), string("aws:"[i])) {
			return key
		}
		end += size
	}
	// The fourth rune folded to ":", which folds only to itself: one byte.
	return key[:end-1] + "_" + key[end:]
}

func hasKeyFold(tags []Tag, key string) bool {
	for _, t := range tags {
		if strings.EqualFold(t.Key, key) {
			return true
		}
	}
	return false
}

func sanitizeName(raw string, maxLen int) string {
	var b strings.Builder
	b.Grow(min(len(raw), maxLen*2))
	for _, r := range raw {
		switch {
		case isNameRune(r):
			b.WriteRune(r)
		case r == '/':
			b.WriteByte('@')
		default:
			b.WriteByte('-')
		}
	}
	s := fit(b.String(), raw, maxLen)
	for len(s) < minNameLen {
		s += "_"
	}
	return s
}

// isNameRune reports whether r matches STS's [\w+=,.@-], where \w is ASCII.
func isNameRune(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return true
	}
	return strings.ContainsRune("_+=,.@-", r)
}

func sanitizeTagText(raw string, maxLen int) string {
	var b strings.Builder
	b.Grow(min(len(raw), maxLen*4))
	for _, r := range raw {
		switch {
		case r == utf8.RuneError:
			b.WriteByte('_')
		case unicode.Is(unicode.Z, r):
			b.WriteByte(' ')
		case isTagRune(r):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return fit(b.String(), raw, maxLen)
}

// isTagRune reports whether r matches STS's tag character class
// [\p{L}\p{Z}\p{N}_.:/=+\-@].
func isTagRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.Is(unicode.Z, r) ||
		strings.ContainsRune("_.:/=+-@", r)
}

// fit cuts clean to maxLen UTF-16 code units, replacing the tail by a hash
// of raw when it does not fit. clean holds only valid, allowed runes, and
// "-" and hex digits are allowed everywhere fit is used.
func fit(clean, raw string, maxLen int) string {
	if utf16Len(clean) <= maxLen {
		return clean
	}
	sum := sha256.Sum256([]byte(raw))
	suffix := "-" + hex.EncodeToString(sum[:4])
	budget := maxLen - hashSuffixLen
	n, end := 0, 0
	for i, r := range clean {
		w := utf16.RuneLen(r)
		if n+w > budget {
			break
		}
		n += w
		end = i + utf8.RuneLen(r)
	}
	return clean[:end] + suffix
}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}
