# The bench's "page" workload in Perl: a Dancer2 route rendering a Template
# Toolkit view inside a layout (20 items, escaping, number formatting).
# GET /page?user=NAME. Same page as page.py (Flask) and page.ru (Sinatra).
use strict;
use warnings;
use File::Basename qw(dirname);
use Cwd qw(abs_path);
use Dancer2;

my $dir = dirname(abs_path(__FILE__));
set appdir      => $dir;
set views       => "$dir/views";
set layout      => 'main';
set template    => 'template_toolkit';
set logger      => 'null';
set show_errors => 0;
set charset     => 'UTF-8';

my @TAGS = qw(new sale popular limited);

get '/page' => sub {
    my $user  = query_parameters->get('user') // 'guest';
    my @items = map {
        { id => $_, name => "Item $_ & co", price => sprintf('%.2f', $_ * 3.25),
          tags => [ $TAGS[ $_ % 4 ], $TAGS[ ($_ + 1) % 4 ] ], in_stock => ($_ % 3 != 0) }
    } 1 .. 20;
    my $total = 0;
    $total += $_->{price} for grep { $_->{in_stock} } @items;
    template 'page' => { user => $user, items => \@items, total => sprintf('%.2f', $total),
                         title => 'Catalogue' };
};

to_app;
