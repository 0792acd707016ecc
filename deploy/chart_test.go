package deploy_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/ferry-broker/ferry/internal/config"
	"github.com/ferry-broker/ferry/internal/grant"
	"github.com/ferry-broker/ferry/internal/mint/ghapp"
	"github.com/ferry-broker/ferry/internal/mint/tokensign"
	"github.com/ferry-broker/ferry/internal/registry"
	"github.com/ferry-broker/ferry/internal/trust"
)

// want is what one set of values should produce.
type want struct {
	tls             bool
	hpa             bool
	internalRedis   bool
	redisPassword   bool
	replay          string // memory | redis
	policies        string // inline | configMap | gitSync
	serviceMonitor  bool
	networkPolicy   bool
	signingKeys     int    // signing key plus previous keys
	chartSecret     bool   // the chart renders its own Secret
	minReplicas     int32  // the fewest brokers the chart can run
	policyDirSuffix string // where the broker reads policies, within its mount
	githubApp       bool   // github_app is configured, its key mounted
}

func TestChartRendersWorkingManifests(t *testing.T) {
	dir := t.TempDir()
	keyFile := func(name string) string {
		k, err := tokensign.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := tokensign.WriteKeyFile(p, k); err != nil {
			t.Fatal(err)
		}
		return p
	}
	signing, previous := keyFile("signing.pem"), keyFile("previous.pem")
	policy := filepath.Join("..", "trustpolicies", "deploy-prod.yaml")

	tests := []struct {
		name string
		args []string
		want want
	}{
		{"default values", nil, want{
			internalRedis: true, replay: "redis", policies: "inline", minReplicas: 2, policyDirSuffix: "/etc/ferry/policies",
		}},
		{"production values", []string{"-f", filepath.Join(chartDir, "ci", "production-values.yaml")}, want{
			tls: true, hpa: true, redisPassword: true, replay: "redis", policies: "gitSync", serviceMonitor: true,
			networkPolicy: true, signingKeys: 2, minReplicas: 3, policyDirSuffix: "/etc/ferry/git/current/trustpolicies", githubApp: true,
		}},
		{"keys, password and policies in the chart's own objects", []string{
			"--set", "token.enabled=true,token.issuer=https://ferry.example.com,redis.auth.enabled=true,redis.auth.password=s3cr3t-redis-pw",
			"--set-file", "token.signingKey=" + signing, "--set-file", "token.previousKeys[0]=" + previous,
			"--set-file", `policies.files.deploy-prod\.yaml=` + policy,
		}, want{
			internalRedis: true, redisPassword: true, replay: "redis", policies: "inline", signingKeys: 2, chartSecret: true,
			minReplicas: 2, policyDirSuffix: "/etc/ferry/policies",
		}},
		{"one replica, policies from a ConfigMap of the operator's", []string{
			"--set", "replicaCount=1,redis.internal.enabled=false,policies.source=configMap,policies.existingConfigMap=acme-policies",
		}, want{replay: "memory", policies: "configMap", minReplicas: 1, policyDirSuffix: "/etc/ferry/policies"}},
		{"git-sync of a repository's root, external Redis", []string{
			"--set", "policies.source=gitSync,policies.gitSync.repo=https://github.com/acme/policies,policies.gitSync.path=",
			"--set", "redis.internal.enabled=false,redis.url=redis://redis.acme.internal:6379/1",
		}, want{replay: "redis", policies: "gitSync", minReplicas: 2, policyDirSuffix: "/etc/ferry/git/current"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := render(t, tt.args...)
			checkChart(t, m, tt.want)
		})
	}
}

func checkChart(t *testing.T, m *manifests, w want) {
	d, err := m.deployment("ferry")
	if err != nil {
		t.Fatal(err)
	}
	pod := &d.Spec.Template
	ferry := container(t, pod.Spec.Containers, "ferry")

	checkReplicasAndRollout(t, m, d, w)
	checkPodSecurity(t, "ferry", pod.Spec)
	if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
		t.Error("the broker pod mounts a Kubernetes API token it never uses")
	}
	checkProbes(t, ferry, w.tls)
	checkService(t, m, d, ferry, w.tls)
	cfg, root := loadPodConfig(t, m, pod, ferry)
	checkConfig(t, m, pod, ferry, cfg, root, w)
	checkNoSecretsInConfigMaps(t, m)

	// The chart's Redis, when it runs one, is locked down too, and the
	// broker's Service does not select it.
	redis, err := m.deployment("ferry-redis")
	if (err == nil) != w.internalRedis {
		t.Fatalf("the chart's Redis: rendered = %v, want %v", err == nil, w.internalRedis)
	}
	if redis != nil {
		checkPodSecurity(t, "ferry-redis", redis.Spec.Template.Spec)
		if selects(m.services["ferry"].Spec.Selector, redis.Spec.Template.Labels) {
			t.Error("the broker's Service selects the Redis pod")
		}
		np := m.netpols["ferry-redis"]
		if np == nil || len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 1 ||
			!selects(np.Spec.Ingress[0].From[0].PodSelector.MatchLabels, pod.Labels) {
			t.Errorf("the chart's Redis is not limited to the brokers: %+v", np)
		}
	}
	if gotSM := m.serviceMonitors["ferry"] != nil; gotSM != w.serviceMonitor {
		t.Errorf("ServiceMonitor rendered = %v, want %v", gotSM, w.serviceMonitor)
	} else if gotSM {
		checkServiceMonitor(t, m.serviceMonitors["ferry"], m.services["ferry"], w.tls)
	}
	if np := m.netpols["ferry"]; (np != nil) != w.networkPolicy {
		t.Errorf("NetworkPolicy rendered = %v, want %v", np != nil, w.networkPolicy)
	} else if np != nil && !selects(np.Spec.PodSelector.MatchLabels, pod.Labels) {
		t.Errorf("the NetworkPolicy does not select the brokers: %v", np.Spec.PodSelector)
	}
	if sa := m.serviceAccounts[pod.Spec.ServiceAccountName]; sa == nil {
		t.Errorf("ServiceAccount %q is not rendered", pod.Spec.ServiceAccountName)
	}
}

func container(t *testing.T, cs []corev1.Container, name string) *corev1.Container {
	t.Helper()
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

func selects(selector, podLabels map[string]string) bool {
	return len(selector) > 0 && labels.SelectorFromSet(selector).Matches(labels.Set(podLabels))
}

// checkReplicasAndRollout: at least two brokers (unless the values ask for
// one), a rollout that starts a new pod before stopping an old one, and a
// disruption budget that leaves one serving through a drain.
func checkReplicasAndRollout(t *testing.T, m *manifests, d *appsv1.Deployment, w want) {
	least := int32(0)
	if hpa := m.hpas["ferry"]; w.hpa {
		if hpa == nil {
			t.Fatal("no HorizontalPodAutoscaler")
		}
		if d.Spec.Replicas != nil {
			t.Error("the Deployment sets replicas although the HPA owns them")
		}
		if hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != d.Name {
			t.Errorf("the HPA scales %+v", hpa.Spec.ScaleTargetRef)
		}
		least = *hpa.Spec.MinReplicas
		if hpa.Spec.MaxReplicas < least {
			t.Errorf("HPA max %d < min %d", hpa.Spec.MaxReplicas, least)
		}
	} else {
		if hpa != nil {
			t.Error("an HPA was rendered")
		}
		if d.Spec.Replicas == nil {
			t.Fatal("the Deployment has no replicas and no HPA")
		}
		least = *d.Spec.Replicas
	}
	if least != w.minReplicas {
		t.Errorf("fewest brokers = %d, want %d", least, w.minReplicas)
	}
	if !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("the Deployment's selector %v does not select its pods %v", d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}
	s := d.Spec.Strategy
	if s.Type != appsv1.RollingUpdateDeploymentStrategyType || s.RollingUpdate == nil {
		t.Fatalf("strategy %+v, want RollingUpdate", s)
	}
	if u := s.RollingUpdate.MaxUnavailable; u == nil || intstr.ValueOrDefault(u, intstr.FromInt32(1)).IntValue() != 0 {
		t.Errorf("maxUnavailable = %v, want 0: a rollout must never take a ready broker away first", u)
	}
	if su := s.RollingUpdate.MaxSurge; su == nil || su.IntValue() < 1 {
		t.Errorf("maxSurge = %v, want at least 1, or a rollout with maxUnavailable 0 cannot start", su)
	}
	pdb := m.pdbs["ferry"]
	if pdb == nil {
		t.Fatal("no PodDisruptionBudget")
	}
	if pdb.Spec.Selector == nil || !selects(pdb.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("the PDB does not select the brokers: %v", pdb.Spec.Selector)
	}
	switch {
	case pdb.Spec.MaxUnavailable != nil && pdb.Spec.MinAvailable == nil:
		if mu := int32(pdb.Spec.MaxUnavailable.IntValue()); mu < 1 || (least >= 2 && mu >= least) {
			t.Errorf("PDB maxUnavailable %d with %d brokers: a drain must be possible and leave one serving", mu, least)
		}
	default:
		t.Errorf("PDB %+v: want maxUnavailable alone", pdb.Spec)
	}
}

// checkPodSecurity: every container, init containers included, runs as
// non-root with a read-only root, no privilege escalation, no capabilities
// and the runtime's seccomp profile.
func checkPodSecurity(t *testing.T, what string, spec corev1.PodSpec) {
	psc := spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	all := append(slices.Clone(spec.InitContainers), spec.Containers...)
	for _, c := range all {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s/%s: no securityContext", what, c.Name)
			continue
		}
		nonRoot := sc.RunAsNonRoot
		if nonRoot == nil {
			nonRoot = psc.RunAsNonRoot
		}
		if nonRoot == nil || !*nonRoot {
			t.Errorf("%s/%s: runAsNonRoot is not true", what, c.Name)
		}
		if uid := firstInt64(sc.RunAsUser, psc.RunAsUser); uid != nil && *uid == 0 {
			t.Errorf("%s/%s: runs as uid 0", what, c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s/%s: the root filesystem is writable", what, c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s/%s: allowPrivilegeEscalation is not false", what, c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s/%s: privileged", what, c.Name)
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s/%s: capabilities %+v, want drop [ALL] and none added", what, c.Name, sc.Capabilities)
		}
		seccomp := sc.SeccompProfile
		if seccomp == nil {
			seccomp = psc.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s/%s: seccomp profile %+v, want RuntimeDefault", what, c.Name, seccomp)
		}
	}
}

func firstInt64(ps ...*int64) *int64 {
	for _, p := range ps {
		if p != nil {
			return p
		}
	}
	return nil
}

func checkProbes(t *testing.T, c *corev1.Container, tls bool) {
	scheme := corev1.URISchemeHTTP
	if tls {
		scheme = corev1.URISchemeHTTPS
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("no %s probe over HTTP", p.name)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path || g.Scheme != scheme || !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == g.Port.String() }) {
			t.Errorf("%s probe %s %s on port %q, want %s %s on a port of the container (%v)", p.name, g.Scheme, g.Path, g.Port.String(), scheme, p.path, c.Ports)
		}
	}
}

func checkService(t *testing.T, m *manifests, d *appsv1.Deployment, c *corev1.Container, tls bool) {
	svc := m.services["ferry"]
	if svc == nil {
		t.Fatal("no Service ferry")
	}
	if !selects(svc.Spec.Selector, d.Spec.Template.Labels) {
		t.Errorf("the Service's selector %v does not select the brokers %v", svc.Spec.Selector, d.Spec.Template.Labels)
	}
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("Service ports %v", svc.Spec.Ports)
	}
	p := svc.Spec.Ports[0]
	if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.TargetPort.String() }) {
		t.Errorf("the Service targets port %q, which the container does not name", p.TargetPort.String())
	}
	if wantName := map[bool]string{true: "https", false: "http"}[tls]; p.Name != wantName {
		t.Errorf("Service port name %q, want %q", p.Name, wantName)
	}
}

func checkServiceMonitor(t *testing.T, sm *serviceMonitor, svc *corev1.Service, tls bool) {
	if !selects(sm.Spec.Selector.MatchLabels, svc.Labels) {
		t.Errorf("the ServiceMonitor selects %v, not the Service's labels %v", sm.Spec.Selector.MatchLabels, svc.Labels)
	}
	if len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("endpoints %+v", sm.Spec.Endpoints)
	}
	e := sm.Spec.Endpoints[0]
	if e.Path != "/metrics" || e.Port != svc.Spec.Ports[0].Name || (e.Scheme == "https") != tls {
		t.Errorf("ServiceMonitor endpoint %+v", e)
	}
}

// loadPodConfig lays out the broker container's file system as the
// kubelet would, from the rendered ConfigMaps and Secrets (placeholders
// for objects the operator brings), and loads ferry.yaml from it with
// config.Load: the ConfigMap's config must load, and its relative paths
// resolve into the mounts. It returns the config and the root.
func loadPodConfig(t *testing.T, m *manifests, pod *corev1.PodTemplateSpec, c *corev1.Container) (*config.Config, string) {
	t.Helper()
	root := t.TempDir()
	for _, vm := range c.VolumeMounts {
		if vm.SubPath != "" {
			t.Errorf("mount %s uses subPath, which never sees updates", vm.MountPath)
		}
		if !vm.ReadOnly {
			t.Errorf("mount %s is writable", vm.MountPath)
		}
		vol := volume(t, pod.Spec.Volumes, vm.Name)
		dir := filepath.Join(root, vm.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case vol.ConfigMap != nil:
			cm := m.configMaps[vol.ConfigMap.Name]
			if cm == nil {
				continue // the operator's own ConfigMap (policies)
			}
			for k, v := range cm.Data {
				write(t, filepath.Join(dir, k), []byte(v))
			}
		case vol.Secret != nil:
			s := m.secrets[vol.Secret.SecretName]
			if len(vol.Secret.Items) == 0 {
				t.Errorf("secret volume %s mounts every key: name them, so a missing one stops the pod", vm.Name)
			}
			if vol.Secret.DefaultMode == nil || *vol.Secret.DefaultMode&0o007 != 0 {
				t.Errorf("secret volume %s: mode %v is readable by others", vm.Name, vol.Secret.DefaultMode)
			}
			for _, it := range vol.Secret.Items {
				data := []byte("placeholder for " + it.Key + " of the operator's Secret " + vol.Secret.SecretName)
				if s != nil {
					var ok bool
					if data, ok = s.Data[it.Key]; !ok {
						t.Errorf("the chart's Secret %s has no key %s, which the pod mounts", s.Name, it.Key)
					}
				}
				write(t, filepath.Join(dir, it.Path), data)
			}
		case vol.EmptyDir != nil:
		default:
			t.Errorf("volume %s: a kind this test does not lay out", vm.Name)
		}
	}
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) || c.Args[0] != "serve" {
		t.Fatalf("container args %v, want serve --config FILE", c.Args)
	}
	cfg, err := config.Load(filepath.Join(root, c.Args[i+1]))
	if err != nil {
		t.Fatalf("the broker's config does not load: %v", err)
	}
	return cfg, root
}

func volume(t *testing.T, vs []corev1.Volume, name string) *corev1.Volume {
	t.Helper()
	for i := range vs {
		if vs[i].Name == name {
			return &vs[i]
		}
	}
	t.Fatalf("no volume %q", name)
	return nil
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func checkConfig(t *testing.T, m *manifests, pod *corev1.PodTemplateSpec, c *corev1.Container, cfg *config.Config, root string, w want) {
	inPod := func(p string) string {
		rel, ok := strings.CutPrefix(p, root)
		if !ok {
			t.Errorf("the config names %s, outside the pod's mounts", p)
		}
		return rel
	}
	mounted := func(what, p string, file bool) {
		t.Helper()
		rel := inPod(p)
		if !slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool {
			return rel == vm.MountPath || strings.HasPrefix(rel, vm.MountPath+"/")
		}) {
			t.Errorf("%s at %s is not mounted", what, rel)
		}
		if _, err := os.Stat(p); file && err != nil {
			t.Errorf("%s at %s is not in its volume: %v", what, rel, err)
		}
	}

	_, port, err := net.SplitHostPort(cfg.Listen)
	if host, _, _ := net.SplitHostPort(cfg.Listen); err != nil || net.ParseIP(host).IsLoopback() || host == "localhost" {
		t.Errorf("listen %q: the pod must listen beyond loopback for its Service", cfg.Listen)
	}
	if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return strconv.Itoa(int(cp.ContainerPort)) == port }) {
		t.Errorf("Ferry listens on %s, the container declares %v", cfg.Listen, c.Ports)
	}

	mounted("policies", cfg.Policies, false)
	if rel := inPod(cfg.Policies); rel != w.policyDirSuffix {
		t.Errorf("policies at %s, want %s", rel, w.policyDirSuffix)
	}
	checkPolicySource(t, m, pod, cfg, w)

	if cfg.Replay.Store != w.replay {
		t.Errorf("replay.store = %q, want %q", cfg.Replay.Store, w.replay)
	}
	if w.replay == "redis" {
		if u, err := url.Parse(cfg.Replay.RedisURL); w.internalRedis && (err != nil || u.Host != "ferry-redis:6379") {
			t.Errorf("redis_url %q does not name the chart's Redis Service", cfg.Replay.RedisURL)
		}
	}
	if (cfg.Replay.RedisPasswordFile != "") != w.redisPassword {
		t.Errorf("redis_password_file = %q, want one: %v", cfg.Replay.RedisPasswordFile, w.redisPassword)
	} else if w.redisPassword {
		mounted("the Redis password", cfg.Replay.RedisPasswordFile, true)
		if !strings.Contains(cfg.Replay.RedisURL, "@") {
			t.Errorf("Load did not put the password file into redis_url")
		}
	}

	if cfg.TLS.Enabled() != w.tls {
		t.Errorf("tls enabled = %v, want %v", cfg.TLS.Enabled(), w.tls)
	} else if w.tls {
		mounted("the TLS certificate", cfg.TLS.CertFile, true)
		mounted("the TLS key", cfg.TLS.KeyFile, true)
	}

	keys := cfg.Token.PreviousKeys
	if cfg.Token.SigningKey != "" {
		keys = append([]string{cfg.Token.SigningKey}, keys...)
	}
	if len(keys) != w.signingKeys {
		t.Errorf("signing keys %v, want %d", keys, w.signingKeys)
	}
	for _, k := range keys {
		mounted("a signing key", k, true)
		if w.chartSecret {
			// The chart's own Secret: the real key, which must survive
			// the trip through values and base64.
			if _, err := tokensign.LoadKeyFile(k); err != nil {
				t.Errorf("signing key from the chart's Secret: %v", err)
			}
		}
	}
	if w.chartSecret != (m.secrets["ferry"] != nil) {
		t.Errorf("the chart's Secret rendered = %v, want %v", m.secrets["ferry"] != nil, w.chartSecret)
	}
	if app := cfg.GitHubApp; app.Enabled() != w.githubApp {
		t.Errorf("github_app = %+v, want one: %v", app, w.githubApp)
	} else if w.githubApp {
		mounted("the GitHub App key", app.PrivateKey, true)
		if app.AppID <= 0 || app.APIURL == "" {
			t.Errorf("github_app = %+v", app)
		}
	}
	if cfg.Audit.Path != "-" {
		t.Errorf("audit.path = %q: on a read-only root with replicas, audit to stdout", cfg.Audit.Path)
	}
}

// checkPolicySource: the policies directory holds what the values say, and
// inline policies load as the broker would load them.
func checkPolicySource(t *testing.T, m *manifests, pod *corev1.PodTemplateSpec, cfg *config.Config, w want) {
	var mountedFrom *corev1.Volume
	for i, v := range pod.Spec.Volumes {
		if v.Name == "policies" {
			mountedFrom = &pod.Spec.Volumes[i]
		}
	}
	switch w.policies {
	case "inline":
		cm := m.configMaps["ferry-policies"]
		if cm == nil || mountedFrom == nil || mountedFrom.ConfigMap == nil || mountedFrom.ConfigMap.Name != cm.Name {
			t.Fatalf("inline policies: ConfigMap %v mounted from %+v", cm, mountedFrom)
		}
		set, err := trust.LoadDir(cfg.Policies, trust.LoadOptions{Issuers: cfg.IssuerNames(), Kinds: registry.Kinds(), Platforms: registry.Platforms()})
		if err != nil {
			t.Fatalf("the policies as mounted do not load: %v", err)
		}
		if set.Len() != len(cm.Data) {
			t.Errorf("%d policies loaded from %d files", set.Len(), len(cm.Data))
		}
	case "configMap":
		if mountedFrom == nil || mountedFrom.ConfigMap == nil || mountedFrom.ConfigMap.Name != "acme-policies" {
			t.Errorf("policies mounted from %+v, want the operator's ConfigMap acme-policies", mountedFrom)
		}
		if m.configMaps["ferry-policies"] != nil {
			t.Error("the chart rendered a policies ConfigMap as well")
		}
	case "gitSync":
		init := container(t, pod.Spec.InitContainers, "git-sync-init")
		side := container(t, pod.Spec.Containers, "git-sync")
		for _, c := range []*corev1.Container{init, side} {
			for _, arg := range []string{"--root=/git", "--link=current"} {
				if !slices.Contains(c.Args, arg) {
					t.Errorf("%s args %v lack %s", c.Name, c.Args, arg)
				}
			}
			if !slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.Name == "git" && vm.MountPath == "/git" }) {
				t.Errorf("%s does not write the git volume at /git", c.Name)
			}
		}
		if !slices.Contains(init.Args, "--one-time") || slices.Contains(side.Args, "--one-time") {
			t.Errorf("the init container must check out once and the sidecar keep syncing: %v / %v", init.Args, side.Args)
		}
	}
}

// checkNoSecretsInConfigMaps: keys and passwords go in Secrets only.
func checkNoSecretsInConfigMaps(t *testing.T, m *manifests) {
	var secrets []string
	for _, s := range m.secrets {
		for _, v := range s.Data {
			secrets = append(secrets, string(v))
		}
	}
	for _, cm := range m.configMaps {
		for k, v := range cm.Data {
			if strings.Contains(v, "PRIVATE KEY") {
				t.Errorf("ConfigMap %s key %s holds a private key", cm.Name, k)
			}
			for _, s := range secrets {
				if strings.Contains(v, strings.TrimSpace(s)) {
					t.Errorf("ConfigMap %s key %s holds a value of the Secret", cm.Name, k)
				}
			}
		}
	}
}

// github_app is rendered only when the values ask for it; its private_key
// names the file the chart mounts from its Secret, and that file is the
// App key the broker loads.
func TestChartRendersTheGitHubAppBlockWhenAsked(t *testing.T) {
	dir := t.TempDir()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	key := filepath.Join(dir, "app.pem")
	write(t, key, keyPEM)
	m := render(t, "--set", "githubApp.enabled=true,githubApp.appId=123456,githubApp.apiUrl=https://ghes.acme.example/api/v3",
		"--set-file", "githubApp.privateKey="+key)
	raw := m.configMaps["ferry-config"].Data["ferry.yaml"]
	d, err := m.deployment("ferry")
	if err != nil {
		t.Fatal(err)
	}
	keys := volume(t, d.Spec.Template.Spec.Volumes, "keys")
	if !slices.ContainsFunc(keys.Secret.Items, func(k corev1.KeyToPath) bool { return k.Path == "github-app.pem" }) {
		t.Errorf("the App key is not mounted: %+v", keys.Secret.Items)
	}
	if s := m.secrets["ferry"]; s == nil || string(s.Data["github-app.pem"]) != string(keyPEM) {
		t.Error("the App key is not in the chart's Secret as given")
	}
	if strings.Contains(raw, "PRIVATE KEY") {
		t.Error("the App key is in the ConfigMap")
	}

	ferry := container(t, d.Spec.Template.Spec.Containers, "ferry")
	cfg, root := loadPodConfig(t, m, &d.Spec.Template, ferry)
	want := config.GitHubApp{AppID: 123456, APIURL: "https://ghes.acme.example/api/v3", PrivateKey: filepath.Join(root, "etc", "ferry", "keys", "github-app.pem")}
	if cfg.GitHubApp != want {
		t.Errorf("github_app = %+v, want %+v", cfg.GitHubApp, want)
	}
	if k, err := ghapp.LoadKeyFile(cfg.GitHubApp.PrivateKey); err != nil || !k.Equal(rsaKey) {
		t.Errorf("the mounted App key does not load as the App's: %v", err)
	}
	if _, err := (ghapp.Kind{}).NewMinter(context.Background(), grant.Env{Config: cfg, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Errorf("the broker would not start its GitHub minter: %v", err)
	}
}

func TestChartRefusesUnsafeOrIncompleteValues(t *testing.T) {
	tests := []struct {
		name, want string
		args       []string
	}{
		{"a password in the Redis URL", "redis.url holds a password", []string{"--set", "redis.internal.enabled=false,redis.url=redis://:hunter2@cache:6379/0"}},
		{"replicas without a shared Redis", "more than one Ferry replica needs a shared Redis", []string{"--set", "redis.internal.enabled=false"}},
		{"an HPA without a shared Redis", "more than one Ferry replica needs a shared Redis", []string{"--set", "replicaCount=1,redis.internal.enabled=false,autoscaling.enabled=true"}},
		{"two Redis", "not both", []string{"--set", "redis.url=redis://cache:6379/0"}},
		{"token grants without a key", "token.signingKey is required", []string{"--set", "token.enabled=true,token.issuer=https://ferry.example.com"}},
		{"token grants without an issuer", "token.issuer is required", []string{"--set", "token.enabled=true"}},
		{"a Redis password that is not given", "redis.auth.password is required", []string{"--set", "redis.auth.enabled=true"}},
		{"TLS without a certificate", "tls.existingSecret is required", []string{"--set", "tls.enabled=true"}},
		{"a key the chart sets, in config", "config.listen is set by the chart", []string{"--set", "config.listen=:9090"}},
		{"tls under config", "config.tls is set by the chart", []string{"--set", "config.tls.cert_file=x"}},
		{"git-sync without a repository", "policies.gitSync.repo is required", []string{"--set", "policies.source=gitSync"}},
		{"an existing ConfigMap without a name", "policies.existingConfigMap is required", []string{"--set", "policies.source=configMap"}},
		{"a GitHub App without its key", "githubApp.privateKey is required", []string{"--set", "githubApp.enabled=true,githubApp.appId=1"}},
		// The schema.
		{"replicas as a word", "replicaCount", []string{"--set-string", "replicaCount=two"}},
		{"no replicas", "minimum", []string{"--set", "replicaCount=0"}},
		{"an unknown value", "additional properties 'replicas' not allowed", []string{"--set", "replicas=3"}},
		{"an unknown policy source", "policies/source", []string{"--set", "policies.source=s3"}},
		{"a policy file that is not YAML", "'notes.txt' does not match pattern", []string{"--set", "policies.files.notes\\.txt=x"}},
		{"a privileged port", "containerPort", []string{"--set", "containerPort=80"}},
		{"an autoscaler that can go to one", "autoscaling/minReplicas", []string{"--set", "autoscaling.enabled=true,autoscaling.minReplicas=1"}},
		{"a log level Ferry does not know", "config/log_level", []string{"--set", "config.log_level=verbose"}},
		{"a Redis URL that is not one", "redis/url", []string{"--set", "redis.internal.enabled=false,redis.url=cache:6379"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			renderFails(t, tt.want, tt.args...)
		})
	}
}
