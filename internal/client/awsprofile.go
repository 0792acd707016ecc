package client

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// Writing a credential_process profile into an AWS config file, in the
// format the GitHub Action writes too: each section Ferry writes carries a
// "# ferry: policy NAME" line, so a later write can tell its own sections
// from anybody else's.

var (
	profileName   = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	sectionHeader = regexp.MustCompile(`^\s*\[\s*(?:profile\s+)?([^\]]+?)\s*\]\s*$`)
	sectionOwner  = regexp.MustCompile(`^# ferry: policy (\S+)$`)
	shellSafe     = regexp.MustCompile(`[^A-Za-z0-9_./:@%+=,-]`)
)

// CheckProfileName refuses names that cannot be a config section.
func CheckProfileName(name string) error {
	if !profileName.MatchString(name) {
		return fmt.Errorf("aws profile %q must be letters, digits, . _ - (at most 64)", name)
	}
	return nil
}

// CommandLine joins argv into a credential_process value that botocore
// (shlex) and aws-sdk-go-v2 (sh -c) split back into the same argv: each
// unsafe character gets a backslash. Double quotes would not do: the Go
// SDK's ini reader strips a pair wrapping the whole value and cuts a
// value at " #" or " ;".
func CommandLine(argv []string) (string, error) {
	parts := make([]string, len(argv))
	for i, a := range argv {
		// Control characters have no business in these paths and URLs, and
		// the ini readers trim the value: a final space would be lost.
		if a == "" || strings.ContainsFunc(a, func(r rune) bool { return r < 0x20 || r == 0x7f }) ||
			(i == len(argv)-1 && strings.TrimRightFunc(a, unicode.IsSpace) != a) {
			return "", fmt.Errorf("cannot write %q into a credential_process line", a)
		}
		parts[i] = shellSafe.ReplaceAllStringFunc(a, func(c string) string { return `\` + c })
	}
	return strings.Join(parts, " "), nil
}

// profileSection is one section of a config file.
type profileSection struct {
	name, policy string
	text         string
}

func parseConfig(text string) (preamble string, sections []*profileSection) {
	var cur *profileSection
	for _, line := range strings.SplitAfter(text, "\n") {
		if line == "" {
			continue
		}
		if m := sectionHeader.FindStringSubmatch(strings.TrimRight(line, "\r\n")); m != nil {
			cur = &profileSection{name: m[1], text: line}
			sections = append(sections, cur)
			continue
		}
		if cur == nil {
			preamble += line
			continue
		}
		if m := sectionOwner.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			cur.policy = m[1]
		}
		cur.text += line
	}
	return preamble, sections
}

func sectionTitle(profile string) string {
	if profile == "default" {
		return "[default]"
	}
	return "[profile " + profile + "]"
}

// CheckProfileOwner refuses a profile that configFile already has for
// another policy, or that Ferry did not write.
func CheckProfileOwner(configFile, profile, policy string) error {
	data, err := os.ReadFile(configFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read AWS config: %w", err)
	}
	_, sections := parseConfig(string(data))
	for _, s := range sections {
		if s.name != profile {
			continue
		}
		if s.policy == "" {
			return fmt.Errorf("%s already has a profile %q that Ferry did not write: pick another name", configFile, profile)
		}
		if s.policy != policy {
			return fmt.Errorf("%s already has profile %q for policy %q: pick another name", configFile, profile, s.policy)
		}
	}
	return nil
}

// WriteProfile puts a credential_process profile into configFile (created
// 0600 when absent), replacing Ferry's own section of that name for the
// same policy and keeping every other section.
func WriteProfile(configFile, profile, policy, command, region string) error {
	if err := CheckProfileOwner(configFile, profile, policy); err != nil {
		return err
	}
	data, err := os.ReadFile(configFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read AWS config: %w", err)
	}
	preamble, sections := parseConfig(string(data))
	var b strings.Builder
	b.WriteString(preamble)
	for _, s := range sections {
		if s.name != profile {
			b.WriteString(strings.TrimRight(s.text, "\n") + "\n\n")
		}
	}
	fmt.Fprintf(&b, "%s\n# ferry: policy %s\ncredential_process = %s\n", sectionTitle(profile), policy, command)
	if region != "" {
		fmt.Fprintf(&b, "region = %s\n", region)
	}
	tmp := configFile + "." + strconv.Itoa(os.Getpid()) + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write AWS config: %w", err)
	}
	if err := os.Rename(tmp, configFile); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write AWS config: %w", err)
	}
	return nil
}
