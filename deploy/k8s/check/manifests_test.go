// Package check validates deploy/k8s against the Kubernetes API types, with
// no cluster: every document must decode strictly (an unknown or misspelt
// field fails, as the API server's strict field validation would), and the
// pieces must fit together (selectors, ports, probes, limits).
//
// It is its own module so the server's go.mod does not carry the
// Kubernetes API. Run: cd deploy/k8s/check && go test ./...
package check

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

type manifests struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	pdbs        []*policyv1.PodDisruptionBudget
	ingresses   []*networkingv1.Ingress
}

func load(t *testing.T) manifests {
	t.Helper()
	files, _ := filepath.Glob("../*.yaml")
	if len(files) == 0 {
		t.Fatal("no manifests in deploy/k8s")
	}
	var m manifests
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(raw, []byte("\n---\n")) {
			where := fmt.Sprintf("%s document %d", filepath.Base(f), i+1)
			var meta struct{ APIVersion, Kind string }
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			var obj any
			switch meta.APIVersion + " " + meta.Kind {
			case "apps/v1 Deployment":
				o := new(appsv1.Deployment)
				m.deployments, obj = append(m.deployments, o), o
			case "v1 Service":
				o := new(corev1.Service)
				m.services, obj = append(m.services, o), o
			case "policy/v1 PodDisruptionBudget":
				o := new(policyv1.PodDisruptionBudget)
				m.pdbs, obj = append(m.pdbs, o), o
			case "networking.k8s.io/v1 Ingress":
				o := new(networkingv1.Ingress)
				m.ingresses, obj = append(m.ingresses, o), o
			default:
				t.Fatalf("%s: unexpected kind %q %q (add it to the check)", where, meta.APIVersion, meta.Kind)
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Errorf("%s (%s): %v", where, meta.Kind, err)
			}
		}
	}
	return m
}

func TestManifests(t *testing.T) {
	m := load(t)
	if len(m.deployments) != 1 || len(m.services) != 1 || len(m.pdbs) != 1 {
		t.Fatalf("want one Deployment, Service and PodDisruptionBudget; got %d, %d, %d", len(m.deployments), len(m.services), len(m.pdbs))
	}
	d, svc, pdb := m.deployments[0], m.services[0], m.pdbs[0]
	pod := labels.Set(d.Spec.Template.Labels)
	sel := labels.SelectorFromSet(d.Spec.Selector.MatchLabels)
	if !sel.Matches(pod) {
		t.Errorf("the Deployment's selector %v does not match its pods %v", sel, pod)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(pod) {
		t.Errorf("the Service's selector does not match the pods")
	}
	if !labels.SelectorFromSet(pdb.Spec.Selector.MatchLabels).Matches(pod) {
		t.Errorf("the PodDisruptionBudget's selector does not match the pods")
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("replicas = %v: one instance cannot take another's clients", d.Spec.Replicas)
	}

	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("want one container")
	}
	c := d.Spec.Template.Spec.Containers[0]
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for _, p := range svc.Spec.Ports {
		if _, ok := ports[p.TargetPort.String()]; !ok && p.TargetPort.IntVal == 0 {
			t.Errorf("Service port %s targets %q, which the container does not name", p.Name, p.TargetPort.String())
		}
	}
	probe := func(name string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe missing", name)
			return
		}
		if p.HTTPGet.Path != path {
			t.Errorf("%s probe GETs %s, want %s", name, p.HTTPGet.Path, path)
		}
		if _, ok := ports[p.HTTPGet.Port.String()]; !ok {
			t.Errorf("%s probe port %q is not a container port", name, p.HTTPGet.Port.String())
		}
	}
	probe("liveness", c.LivenessProbe, "/livez")
	probe("readiness", c.ReadinessProbe, "/readyz")
	probe("startup", c.StartupProbe, "/livez")
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Limits[r]; !ok {
			t.Errorf("no %s limit", r)
		}
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
	}
	env := map[string]bool{}
	for _, e := range c.Env {
		env[e.Name] = true
	}
	for _, want := range []string{"REDIS_URL", "INSTANCE_ID", "TRUST_PROXY"} {
		if !env[want] {
			t.Errorf("the container does not set %s", want)
		}
	}
	// The drain (SHUTDOWN_TIMEOUT_MS, 10 s) must finish before the kubelet's SIGKILL.
	grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil || *grace <= 10 {
		t.Errorf("terminationGracePeriodSeconds = %v, want more than the 10 s drain", grace)
	}
	if sc := d.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("pods may run as root")
	}
	if !strings.Contains(c.Image, "bandsync") {
		t.Errorf("image %q", c.Image)
	}
	for _, ing := range m.ingresses {
		for _, r := range ing.Spec.Rules {
			for _, p := range r.HTTP.Paths {
				if p.Backend.Service == nil || p.Backend.Service.Name != svc.Name {
					t.Errorf("ingress %s routes to a service other than %s", ing.Name, svc.Name)
				}
			}
		}
	}
}
