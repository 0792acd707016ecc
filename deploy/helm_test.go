package deploy_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// helmModule is the Helm the tests and `make helm` use, built from the Go
// module proxy.
const helmModule = "helm.sh/helm/v3/cmd/helm@v3.22.0"

// kubeVersion is the cluster version the chart is rendered for. A Helm
// built with `go run` assumes Kubernetes 1.20 otherwise, which the chart's
// kubeVersion (>= 1.30, for preStop's sleep) refuses.
const kubeVersion = "1.33.0"

const chartDir = "helm/ferry"

var (
	helmOnce sync.Once
	helmBin  string
	helmErr  error
	// binDir holds a helm this test process installed, removed by TestMain.
	binDir string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// needHelm returns the helm binary. `make test` builds it and sets
// FERRY_HELM, so there a helm that does not run fails the test; elsewhere
// the test installs helm itself from the Go module proxy and skips, saying
// why, when it cannot.
func needHelm(t *testing.T) string {
	t.Helper()
	fromMake := os.Getenv("FERRY_HELM")
	helmOnce.Do(func() {
		helmBin = fromMake
		if helmBin == "" {
			if binDir, helmErr = os.MkdirTemp("", "ferry-helm-"); helmErr != nil {
				return
			}
			install := exec.Command("go", "install", helmModule)
			install.Env = append(os.Environ(), "GOBIN="+binDir)
			if out, err := install.CombinedOutput(); err != nil {
				helmErr = fmt.Errorf("go install %s: %v\n%s", helmModule, err, out)
				return
			}
			helmBin = filepath.Join(binDir, "helm")
		}
		if out, err := exec.Command(helmBin, "version", "--short").CombinedOutput(); err != nil {
			helmErr = fmt.Errorf("%s version: %v\n%s", helmBin, err, out)
		}
	})
	if helmErr != nil {
		if fromMake != "" || os.Getenv("CI") == "true" {
			t.Fatal(helmErr)
		}
		t.Skipf("helm does not run here, so the chart is not checked (`make test` builds it from the Go module proxy): %v", helmErr)
	}
	return helmBin
}

// runHelm runs helm with args and returns its stdout, or its error with
// stderr.
func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(needHelm(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// render is `helm template` of the chart as release "ferry" in namespace
// "ferry", with extra arguments (-f, --set, --set-file).
func render(t *testing.T, args ...string) *manifests {
	t.Helper()
	out, err := runHelm(t, append([]string{"template", "ferry", chartDir, "--namespace", "ferry", "--kube-version", kubeVersion}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return decodeManifests(t, out)
}

// renderFails is `helm template` that must fail with want in its error.
func renderFails(t *testing.T, want string, args ...string) {
	t.Helper()
	_, err := runHelm(t, append([]string{"template", "ferry", chartDir, "--kube-version", kubeVersion}, args...)...)
	if err == nil {
		t.Fatalf("helm template %v succeeded, want a refusal saying %q", args, want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("helm template %v:\n%v\nwant it to say %q", args, err, want)
	}
}

// manifests are the rendered objects by kind and name, decoded strictly
// into the Kubernetes API types: a field the API does not have (a typo in
// a template) is an error, as `kubectl apply` would make it.
type manifests struct {
	deployments     map[string]*appsv1.Deployment
	services        map[string]*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	serviceAccounts map[string]*corev1.ServiceAccount
	pdbs            map[string]*policyv1.PodDisruptionBudget
	hpas            map[string]*autoscalingv2.HorizontalPodAutoscaler
	netpols         map[string]*networkingv1.NetworkPolicy
	serviceMonitors map[string]*serviceMonitor
}

// serviceMonitor is the part of the Prometheus Operator's CRD the chart
// writes (the type is not in k8s.io/api).
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string         `json:"port"`
			Path          string         `json:"path"`
			Scheme        string         `json:"scheme"`
			Interval      string         `json:"interval"`
			ScrapeTimeout string         `json:"scrapeTimeout"`
			TLSConfig     map[string]any `json:"tlsConfig"`
		} `json:"endpoints"`
	} `json:"spec"`
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

func decodeManifests(t *testing.T, out string) *manifests {
	t.Helper()
	m := &manifests{
		deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		serviceAccounts: map[string]*corev1.ServiceAccount{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{}, netpols: map[string]*networkingv1.NetworkPolicy{},
		serviceMonitors: map[string]*serviceMonitor{},
	}
	for _, doc := range docSeparator.Split(out, -1) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, doc)
		}
		if tm.Kind == "" {
			continue // comments only
		}
		into := func(obj interface{ GetName() string }, dst func()) {
			if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
				t.Fatalf("%s does not decode as the Kubernetes API type: %v\n%s", tm.Kind, err, doc)
			}
			dst()
		}
		switch want := map[string]string{
			"Deployment": "apps/v1", "Service": "v1", "ConfigMap": "v1", "Secret": "v1", "ServiceAccount": "v1",
			"PodDisruptionBudget": "policy/v1", "HorizontalPodAutoscaler": "autoscaling/v2",
			"NetworkPolicy": "networking.k8s.io/v1", "ServiceMonitor": "monitoring.coreos.com/v1",
		}[tm.Kind]; {
		case want == "":
			t.Errorf("the chart renders a %s, which this test does not check", tm.Kind)
			continue
		case tm.APIVersion != want:
			t.Errorf("%s has apiVersion %s, want %s", tm.Kind, tm.APIVersion, want)
		}
		switch tm.Kind {
		case "Deployment":
			o := &appsv1.Deployment{}
			into(o, func() { m.deployments[o.Name] = o })
		case "Service":
			o := &corev1.Service{}
			into(o, func() { m.services[o.Name] = o })
		case "ConfigMap":
			o := &corev1.ConfigMap{}
			into(o, func() { m.configMaps[o.Name] = o })
		case "Secret":
			o := &corev1.Secret{}
			into(o, func() { m.secrets[o.Name] = o })
		case "ServiceAccount":
			o := &corev1.ServiceAccount{}
			into(o, func() { m.serviceAccounts[o.Name] = o })
		case "PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			into(o, func() { m.pdbs[o.Name] = o })
		case "HorizontalPodAutoscaler":
			o := &autoscalingv2.HorizontalPodAutoscaler{}
			into(o, func() { m.hpas[o.Name] = o })
		case "NetworkPolicy":
			o := &networkingv1.NetworkPolicy{}
			into(o, func() { m.netpols[o.Name] = o })
		case "ServiceMonitor":
			o := &serviceMonitor{}
			into(o, func() { m.serviceMonitors[o.Name] = o })
		}
	}
	return m
}

// The Makefile's helm step must use the Helm this test uses.
func TestMakefileLintsTheChartWithTheSameHelm(t *testing.T) {
	mk, err := os.ReadFile(filepath.Join("..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{helmModule, "KUBE_VERSION := " + kubeVersion, "lint --strict", "ci/production-values.yaml"} {
		if !bytes.Contains(mk, []byte(want)) {
			t.Errorf("Makefile does not contain %q", want)
		}
	}
	if !regexp.MustCompile(`(?m)^test:.*\bhelm\b`).Match(mk) {
		t.Error("make test does not run the helm step")
	}
}

func TestHelmLint(t *testing.T) {
	for name, args := range map[string][]string{
		"default values":    nil,
		"production values": {"-f", filepath.Join(chartDir, "ci", "production-values.yaml")},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := runHelm(t, append([]string{"lint", "--strict", "--kube-version", kubeVersion, chartDir}, args...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// errNotFound marks a lookup in the rendered objects that found nothing.
var errNotFound = errors.New("not rendered")

func (m *manifests) deployment(name string) (*appsv1.Deployment, error) {
	if d, ok := m.deployments[name]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("Deployment %s: %w", name, errNotFound)
}
