// The one translation unit that compiles Boost.Asio's implementation (and its SSL part), so the
// rest of the tree includes only declarations. See BOOST_ASIO_SEPARATE_COMPILATION.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
