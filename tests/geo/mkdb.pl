#!/usr/bin/perl
# mkdb.pl PLACES.tsv OUT.mmdb: writes meridian's test geo database from the
# table (tests/geo/places.tsv) with Debian's libmaxmind-db-writer-perl. The
# records have the GeoIP2/GeoLite2-City layout that src/core/geo.c reads:
# country.iso_code, continent.code, registered_country.iso_code,
# location.{latitude,longitude} and city.names.en. An IPv6 tree, with IPv4 in
# ::/96 and ::ffff:0:0/96 aliased to it, as MaxMind's own City databases.
# With --country it writes the GeoIP2-Country layout instead: the same
# networks without location and city (clients then get their country's
# centroid), used by the tests that replace one database with another.
use strict;
use warnings;
use utf8;
use open qw(:std :encoding(UTF-8));
use MaxMind::DB::Writer::Tree;

my $country_only = @ARGV && $ARGV[0] eq '--country' ? shift @ARGV : 0;
@ARGV == 2 or die "usage: $0 [--country] PLACES.tsv OUT.mmdb\n";
my ($table, $out) = @ARGV;

my %types = (
    city               => 'map',
    continent          => 'map',
    country            => 'map',
    registered_country => 'map',
    location           => 'map',
    names              => 'map',
    en                 => 'utf8_string',
    code               => 'utf8_string',
    iso_code           => 'utf8_string',
    latitude           => 'double',
    longitude          => 'double',
);

my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version              => 6,
    record_size             => 28,
    database_type           => $country_only ? 'GeoIP2-Country' : 'GeoIP2-City',
    languages               => ['en'],
    description             => { en => 'meridian test data (tests/geo/places.tsv): not a real geo database' },
    map_key_type_callback   => sub { $types{ $_[0] } // die "mkdb.pl: no type for key $_[0]\n" },
    alias_ipv6_to_ipv4      => 1,
    remove_reserved_networks => 0,
);

open(my $fh, '<', $table) or die "mkdb.pl: $table: $!\n";
my $n = 0;
while (my $line = <$fh>) {
    chomp $line;
    next if $line =~ /^\s*(#|$)/;
    my @f = split /\t/, $line, -1;
    die "mkdb.pl: $table:$.: want at least 7 tab-separated fields, got " . scalar(@f) . "\n" if @f < 7;
    my ($net, $country, $continent, $registered, $lat, $lon, $city) = map { $_ eq '-' ? undef : $_ } @f[0 .. 6];
    die "mkdb.pl: $table:$.: no network\n" unless defined $net && $net =~ m{^[0-9a-fA-F:.]+/\d+$};
    die "mkdb.pl: $table:$.: latitude and longitude go together\n" if defined($lat) != defined($lon);
    my %rec;
    $rec{country}            = { iso_code => $country }    if defined $country;
    $rec{continent}          = { code     => $continent }  if defined $continent;
    $rec{registered_country} = { iso_code => $registered } if defined $registered;
    $rec{location} = { latitude => 0 + $lat, longitude => 0 + $lon } if defined $lat && !$country_only;
    $rec{city}     = { names => { en => $city } } if defined $city && !$country_only;
    next if $country_only && !%rec;
    die "mkdb.pl: $table:$.: empty record\n" unless %rec;
    # IPv4 rows go in as IPv4-mapped-into-::/96, where libmaxminddb looks
    $tree->insert_network($net =~ /:/ ? $net : do {
        my ($a, $p) = split m{/}, $net;
        "::$a/" . ($p + 96);
    }, \%rec);
    $n++;
}
close $fh;
die "mkdb.pl: $table: no networks\n" unless $n;

my $tmp = "$out.tmp.$$";
open(my $o, '>:raw', $tmp) or die "mkdb.pl: $tmp: $!\n";
$tree->write_tree($o);
close $o or die "mkdb.pl: $tmp: $!\n";
rename $tmp, $out or die "mkdb.pl: $out: $!\n";
print "mkdb.pl: $out: $n networks\n";
