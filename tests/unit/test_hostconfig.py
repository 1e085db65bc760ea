"""hostconfig: what save-hostconfig records and what start checks, on inspect data.

The inspect dictionaries are shaped like a 20.10 engine's: Links as
'/db:/web/alias', VolumesFrom as 'data:ro', NetworkMode 'container:<id>', and
NetworkSettings.Ports listing each published port once for 0.0.0.0 and once
for '::'.
"""

from __future__ import annotations

import json

import pytest

from docker_fw import hostconfig

WEB_ID = "a1" * 32


def inspect(
    links=None,
    volumes_from=None,
    network_mode="default",
    port_bindings=None,
    publish_all=False,
    ports=None,
):
    """A (partial) 'docker inspect' of a container named web."""
    return {
        "Id": WEB_ID,
        "Name": "/web",
        "State": {"Status": "running", "Running": True, "Paused": False},
        "HostConfig": {
            "Links": links,
            "VolumesFrom": volumes_from,
            "NetworkMode": network_mode,
            "PortBindings": port_bindings if port_bindings is not None else {},
            "PublishAllPorts": publish_all,
        },
        "NetworkSettings": {"Ports": ports if ports is not None else {}},
    }


def both_families(port: str) -> list[dict[str, str]]:
    """How 20.10 reports a port published on every address: 0.0.0.0 and ::."""
    return [{"HostIp": "0.0.0.0", "HostPort": port}, {"HostIp": "::", "HostPort": port}]


DYNAMIC_80 = {"80/tcp": [{"HostIp": "", "HostPort": ""}]}
FIXED_80 = {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}


# -- dependencies -----------------------------------------------------------


class TestDependencies:
    def test_legacy_link_gives_the_linked_container(self):
        assert hostconfig.dependencies(inspect(links=["/db:/web/alias"])) == ["db"]

    def test_link_without_leading_slash(self):
        assert hostconfig.dependencies(inspect(links=["db:/web/db"])) == ["db"]

    def test_volumes_from_drops_the_mode(self):
        assert hostconfig.dependencies(inspect(volumes_from=["data:ro", "logs:rw", "cache"])) == [
            "data",
            "logs",
            "cache",
        ]

    def test_network_mode_container_gives_the_container(self):
        other = "f" * 64
        assert hostconfig.dependencies(inspect(network_mode=f"container:{other}")) == [other]

    @pytest.mark.parametrize("mode", ["default", "bridge", "host", "none", "appnet", "", None])
    def test_other_network_modes_are_not_dependencies(self, mode):
        assert hostconfig.dependencies(inspect(network_mode=mode)) == []

    def test_all_kinds_in_order_links_volumes_network(self):
        deps = hostconfig.dependencies(
            inspect(links=["/db:/web/db"], volumes_from=["data:ro"], network_mode="container:vpn")
        )
        assert deps == ["db", "data", "vpn"]

    def test_duplicates_are_listed_once_in_first_seen_order(self):
        deps = hostconfig.dependencies(
            inspect(
                links=["/db:/web/db", "/cache:/web/cache", "/db:/web/database"],
                volumes_from=["db:ro", "data"],
                network_mode="container:cache",
            )
        )
        assert deps == ["db", "cache", "data"]

    def test_nothing_set(self):
        assert hostconfig.dependencies(inspect()) == []
        assert hostconfig.dependencies({"HostConfig": None}) == []
        assert hostconfig.dependencies({}) == []


# -- is_dynamic -----------------------------------------------------------------


class TestIsDynamic:
    def test_publish_all_is_dynamic(self):
        assert hostconfig.is_dynamic({"PublishAllPorts": True, "PortBindings": {}})

    def test_empty_host_port_is_dynamic(self):
        assert hostconfig.is_dynamic({"PortBindings": DYNAMIC_80})

    def test_missing_host_port_is_dynamic(self):
        assert hostconfig.is_dynamic({"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1"}]}})

    def test_fixed_host_port_is_not(self):
        assert not hostconfig.is_dynamic({"PortBindings": FIXED_80, "PublishAllPorts": False})

    def test_one_dynamic_port_among_fixed_ones_is_dynamic(self):
        bindings = {**FIXED_80, "443/tcp": [{"HostIp": "", "HostPort": ""}]}
        assert hostconfig.is_dynamic({"PortBindings": bindings})

    @pytest.mark.parametrize("config", [{}, {"PortBindings": None}, {"PortBindings": {}}, {"PortBindings": {"80/tcp": None}}])
    def test_nothing_published_is_not(self, config):
        assert not hostconfig.is_dynamic(config)


# -- effective_bindings ------------------------------------------------------------


class TestEffectiveBindings:
    def test_ipv4_and_ipv6_any_address_collapse_into_one_empty_host_ip(self):
        got = hostconfig.effective_bindings(inspect(ports={"80/tcp": both_families("32768")}))
        assert got == {"80/tcp": [{"HostIp": "", "HostPort": "32768"}]}

    def test_only_ipv4_any_address(self):
        got = hostconfig.effective_bindings(inspect(ports={"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}]}))
        assert got == {"80/tcp": [{"HostIp": "", "HostPort": "32768"}]}

    def test_specific_host_ip_is_kept(self):
        got = hostconfig.effective_bindings(
            inspect(ports={"53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}]})
        )
        assert got == {"53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}]}

    def test_specific_and_any_address_both_kept(self):
        got = hostconfig.effective_bindings(
            inspect(ports={"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}, *both_families("9090")]})
        )
        assert got == {
            "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}, {"HostIp": "", "HostPort": "9090"}]
        }

    def test_exposed_but_unpublished_ports_are_skipped(self):
        got = hostconfig.effective_bindings(
            inspect(ports={"443/tcp": None, "8443/tcp": [], "80/tcp": both_families("32768")})
        )
        assert got == {"80/tcp": [{"HostIp": "", "HostPort": "32768"}]}

    def test_host_port_is_a_string(self):
        got = hostconfig.effective_bindings(inspect(ports={"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": 32768}]}))
        assert got["80/tcp"][0]["HostPort"] == "32768"

    def test_stopped_container_has_none(self):
        assert hostconfig.effective_bindings(inspect(ports={})) == {}
        assert hostconfig.effective_bindings({"NetworkSettings": {"Ports": None}}) == {}

    def test_usable_as_a_start_body(self):
        """Every binding names HostIp and HostPort, as PortBindings does."""
        got = hostconfig.effective_bindings(
            inspect(ports={"80/tcp": both_families("32768"), "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}]})
        )
        assert all(set(b) == {"HostIp", "HostPort"} for bs in got.values() for b in bs)
        assert list(got) == sorted(got)


# -- wiring and wiring_changes -----------------------------------------------------


def wired(**overrides):
    settings = dict(
        links=["/db:/web/db"],
        volumes_from=["data:ro"],
        network_mode="default",
        port_bindings=DYNAMIC_80,
        publish_all=False,
        ports={"80/tcp": both_families("32768")},
    )
    settings.update(overrides)
    return inspect(**settings)


class TestWiring:
    def test_fields(self):
        assert hostconfig.wiring(wired()) == {
            "links": ["/db:/web/db"],
            "volumes_from": ["data:ro"],
            "network_mode": "default",
            "published": ["80/tcp"],
            "publish_all": False,
        }

    def test_host_port_numbers_are_not_part_of_it(self):
        a = hostconfig.wiring(wired())
        b = hostconfig.wiring(
            wired(
                port_bindings={"80/tcp": [{"HostIp": "", "HostPort": "32768"}]},
                ports={"80/tcp": both_families("40000")},
            )
        )
        assert a == b

    def test_unchanged_container_has_no_changes(self):
        saved = hostconfig.record(wired())
        assert hostconfig.wiring_changes(saved, wired()) == []

    def test_host_ports_changing_is_not_a_wiring_change(self):
        saved = hostconfig.record(wired())
        # pinned by 'start' (HostPort now set) and a different port assigned
        now = wired(
            port_bindings={"80/tcp": [{"HostIp": "", "HostPort": "32771"}]},
            ports={"80/tcp": both_families("32771")},
        )
        assert hostconfig.wiring_changes(saved, now) == []

    def test_stopped_container_against_running_record_is_not_a_change(self):
        saved = hostconfig.record(wired())
        assert hostconfig.wiring_changes(saved, wired(ports={})) == []

    def test_list_order_does_not_matter(self):
        saved = hostconfig.record(wired(links=["/db:/web/db", "/cache:/web/cache"]))
        now = wired(links=["/cache:/web/cache", "/db:/web/db"])
        assert hostconfig.wiring_changes(saved, now) == []

    @pytest.mark.parametrize(
        "override, key",
        [
            ({"links": ["/db:/web/db", "/cache:/web/cache"]}, "links"),
            ({"links": ["/db:/web/database"]}, "links"),
            ({"links": None}, "links"),
            ({"volumes_from": ["data:rw"]}, "volumes_from"),
            ({"volumes_from": ["other"]}, "volumes_from"),
            ({"network_mode": "container:" + "f" * 64}, "network_mode"),
            ({"network_mode": "appnet"}, "network_mode"),
            ({"port_bindings": {**DYNAMIC_80, "443/tcp": [{"HostIp": "", "HostPort": ""}]}}, "published"),
            ({"port_bindings": {"81/tcp": [{"HostIp": "", "HostPort": ""}]}}, "published"),
            ({"port_bindings": {}}, "published"),
            ({"publish_all": True}, "publish_all"),
        ],
    )
    def test_each_wiring_field_is_a_change(self, override, key):
        saved = hostconfig.record(wired())
        assert hostconfig.wiring_changes(saved, wired(**override)) == [key]

    def test_several_changes_all_named(self):
        saved = hostconfig.record(wired())
        now = wired(links=[], volumes_from=[], network_mode="host")
        assert hostconfig.wiring_changes(saved, now) == ["links", "volumes_from", "network_mode"]

    def test_record_without_wiring_is_all_changed(self):
        assert hostconfig.wiring_changes({"bindings": {}}, wired()) == list(hostconfig.wiring(wired()))

    def test_changes_survive_a_json_round_trip(self):
        """The store keeps records as JSON: the comparison must hold after one."""
        saved = json.loads(json.dumps(hostconfig.record(wired())))
        assert hostconfig.wiring_changes(saved, wired()) == []
        assert hostconfig.wiring_changes(saved, wired(links=[])) == ["links"]


# -- record -------------------------------------------------------------------


class TestRecord:
    def test_dynamic_container(self):
        rec = hostconfig.record(wired())
        assert rec == {
            "id": WEB_ID,
            "wiring": hostconfig.wiring(wired()),
            "bindings": {"80/tcp": [{"HostIp": "", "HostPort": "32768"}]},
            "declared": {"80/tcp": [{"HostIp": "", "HostPort": ""}]},
            "publish_all": False,
            "dynamic": True,
        }

    def test_a_later_save_keeps_the_declared_bindings(self):
        """After a pinned start the HostConfig holds fixed numbers; the record
        still knows the port was dynamic (so a failed pin may move it)."""
        first = hostconfig.record(wired())
        pinned = wired()
        pinned["HostConfig"]["PortBindings"] = {"80/tcp": [{"HostIp": "", "HostPort": "32768"}]}
        again = hostconfig.record(pinned, previous=first)
        assert again["declared"] == first["declared"] and again["dynamic"] is True
        assert hostconfig.record(pinned)["dynamic"] is False  # an explicit save starts afresh

    def test_unpinned_frees_only_dynamic_ports(self):
        saved = {
            "bindings": {"80/tcp": [{"HostIp": "", "HostPort": "32768"}],
                         "81/tcp": [{"HostIp": "", "HostPort": "8081"}]},
            "declared": {"80/tcp": [{"HostIp": "", "HostPort": ""}],
                         "81/tcp": [{"HostIp": "", "HostPort": "8081"}]},
        }
        assert hostconfig.unpinned(saved) == {
            "80/tcp": [{"HostIp": "", "HostPort": ""}],
            "81/tcp": [{"HostIp": "", "HostPort": "8081"}],
        }

    def test_fixed_port_container(self):
        rec = hostconfig.record(wired(port_bindings=FIXED_80, ports={"80/tcp": both_families("8080")}))
        assert rec["dynamic"] is False
        assert rec["bindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}


# -- port_changes ------------------------------------------------------------------


class TestPortChanges:
    def saved(self, ports):
        return hostconfig.record(wired(ports=ports))

    def test_same_port_no_change(self):
        saved = self.saved({"80/tcp": both_families("32768")})
        assert hostconfig.port_changes(saved, wired(ports={"80/tcp": both_families("32768")})) == []

    def test_ipv6_duplicate_is_not_a_change(self):
        saved = self.saved({"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"}]})
        assert hostconfig.port_changes(saved, wired(ports={"80/tcp": both_families("32768")})) == []

    def test_changed_port_text(self):
        saved = self.saved({"80/tcp": both_families("32768")})
        now = wired(ports={"80/tcp": both_families("32771")})
        assert hostconfig.port_changes(saved, now) == ["80/tcp: 32768 -> 32771"]

    def test_several_ports_sorted_by_port_key(self):
        saved = self.saved({"80/tcp": both_families("32768"), "443/tcp": both_families("32769")})
        now = wired(ports={"80/tcp": both_families("32770"), "443/tcp": both_families("32771")})
        assert hostconfig.port_changes(saved, now) == ["443/tcp: 32769 -> 32771", "80/tcp: 32768 -> 32770"]

    def test_port_no_longer_published(self):
        saved = self.saved({"80/tcp": both_families("32768")})
        assert hostconfig.port_changes(saved, wired(ports={"80/tcp": None})) == ["80/tcp: 32768 -> none"]

    def test_port_newly_published(self):
        saved = self.saved({})
        now = wired(ports={"8443/tcp": both_families("8443")})
        assert hostconfig.port_changes(saved, now) == ["8443/tcp: none -> 8443"]

    def test_several_bindings_of_one_port(self):
        saved = self.saved({"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}, *both_families("9090")]})
        now = wired(ports={"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}, *both_families("9191")]})
        assert hostconfig.port_changes(saved, now) == ["80/tcp: 8080,9090 -> 8080,9191"]

    def test_record_without_bindings(self):
        now = wired(ports={"80/tcp": both_families("32768")})
        assert hostconfig.port_changes({}, now) == ["80/tcp: none -> 32768"]
