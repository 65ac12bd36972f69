#!/usr/bin/perl
# mkmmdb.pl OUT < JSON: writes a small MaxMind DB for the integration tests.
# JSON: {"type": "Meridian-Test", "networks": [{"cidr": "198.51.100.0/24",
#        "data": {"country": {"iso_code": "IE"}, "location": {"latitude": 53.3,
#        "longitude": -6.3}}}, ...]}. Records use GeoIP2-City field names
# (country, registered_country, continent, location); only those are typed.
# Needs libmaxmind-db-writer-perl (MaxMind::DB::Writer::Tree).
use strict;
use warnings;
use JSON::PP;
use MaxMind::DB::Writer::Tree;

my $out = shift or die "usage: mkmmdb.pl OUT < JSON\n";
my $spec = decode_json(do { local $/; <STDIN> });
my %types = (
    country            => 'map',
    registered_country => 'map',
    continent          => 'map',
    location           => 'map',
    iso_code           => 'utf8_string',
    code               => 'utf8_string',
    latitude           => 'double',
    longitude          => 'double',
);
my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version               => 6,
    record_size              => 24,
    database_type            => $spec->{type} // 'Meridian-Test',
    languages                => ['en'],
    description              => { en => 'meridian integration test database' },
    map_key_type_callback    => sub { $types{ $_[0] } },
    remove_reserved_networks => 0,
    alias_ipv6_to_ipv4       => 1,
);
for my $n (@{ $spec->{networks} }) {
    $tree->insert_network($n->{cidr}, $n->{data});
}
open my $fh, '>:raw', $out or die "$out: $!\n";
$tree->write_tree($fh);
close $fh or die "$out: $!\n";
