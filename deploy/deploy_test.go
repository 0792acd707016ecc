// Package deploy_test checks that the deployment examples agree with the
// broker: a manifest whose config does not load, or mounts nothing where
// the config looks, fails here rather than in someone's cluster.
package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ferry-broker/ferry/internal/config"
)

// object is the part of a Kubernetes object the test reads.
type object struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Template struct {
			Spec struct {
				Containers []struct {
					Name         string   `yaml:"name"`
					Args         []string `yaml:"args"`
					VolumeMounts []struct {
						Name      string `yaml:"name"`
						MountPath string `yaml:"mountPath"`
						SubPath   string `yaml:"subPath"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

func readObjects(t *testing.T, path string) []object {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []object
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, o)
	}
}

func TestKubernetesManifestConfigLoadsAndItsPathsAreMounted(t *testing.T) {
	objs := readObjects(t, filepath.Join("kubernetes", "ferry.yaml"))
	var raw string
	var mounts []string
	var args []string
	for _, o := range objs {
		switch {
		case o.Kind == "ConfigMap" && o.Metadata.Name == "ferry-config":
			raw = o.Data["ferry.yaml"]
		case o.Kind == "Deployment" && o.Metadata.Name == "ferry":
			for _, c := range o.Spec.Template.Spec.Containers {
				args = c.Args
				for _, m := range c.VolumeMounts {
					mounts = append(mounts, m.MountPath)
				}
			}
		}
	}
	if raw == "" || mounts == nil {
		t.Fatal("the manifest lacks the ferry-config ConfigMap or the ferry Deployment")
	}
	cfgPath := args[slices.Index(args, "--config")+1]
	cfg, err := config.Parse([]byte(raw), filepath.Dir(cfgPath), cfgPath)
	if err != nil {
		t.Fatalf("the manifest's ferry.yaml does not load: %v", err)
	}
	for what, path := range map[string]string{
		"the config": cfgPath, "policies": cfg.Policies, "the signing key's directory": filepath.Dir(cfg.Token.SigningKey),
	} {
		if !slices.Contains(mounts, path) {
			t.Errorf("%s at %s is not mounted (mounts: %v)", what, path, mounts)
		}
	}
	if host, _, err := net.SplitHostPort(cfg.Listen); err != nil || net.ParseIP(host).IsLoopback() {
		t.Errorf("listen %q: a pod must listen beyond loopback for its Service", cfg.Listen)
	}
	if cfg.Replay.Store != "redis" {
		t.Errorf("replicas need the redis replay store, got %q", cfg.Replay.Store)
	}
}
