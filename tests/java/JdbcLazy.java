// JdbcLazy — N+1 lazy loading through PgJDBC for pgfold's batching tests
// (tests/integration/test_nplusone_extended.py).
// Usage: java -cp postgresql.jar:. JdbcLazy HOST PORT DATABASE
// Loads the users, then for each user its posts (one PreparedStatement
// reused: unnamed statements first, named server-side ones with binary
// results after prepareThreshold) and the number of its posts (a new
// PreparedStatement per user, as ORMs create them).  Prints one line per
// user with every value read, so runs through different targets compare.

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

public class JdbcLazy {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/" + args[2];
        Properties props = new Properties();
        props.setProperty("user", "app");
        props.setProperty("connectTimeout", "10");
        props.setProperty("socketTimeout", "60");
        try (Connection conn = DriverManager.getConnection(url, props)) {
            run(conn);
        }
    }

    static void run(Connection conn) throws SQLException {
        List<Integer> users = new ArrayList<>();
        try (PreparedStatement ps = conn.prepareStatement("SELECT id, name FROM rw_users ORDER BY id");
             ResultSet rs = ps.executeQuery()) {
            while (rs.next())
                users.add(rs.getInt(1));
        }
        try (PreparedStatement posts = conn.prepareStatement(
                 "SELECT id, user_id, title, score FROM rw_posts WHERE user_id = ? ORDER BY id")) {
            for (int user : users) {
                StringBuilder line = new StringBuilder("user=" + user);
                posts.setInt(1, user);
                try (ResultSet rs = posts.executeQuery()) {
                    while (rs.next())
                        line.append(" post=").append(rs.getInt(1)).append('/').append(rs.getInt(2)).append('/')
                            .append(rs.getString(3)).append('/').append(rs.getBigDecimal(4));
                }
                try (PreparedStatement count = conn.prepareStatement(
                         "SELECT count(*) FROM rw_posts WHERE rw_posts.user_id = ?")) {
                    count.setInt(1, user);
                    try (ResultSet rs = count.executeQuery()) {
                        rs.next();
                        line.append(" count=").append(rs.getLong(1));
                    }
                }
                System.out.println(line);
            }
        }
    }
}
