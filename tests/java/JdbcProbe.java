// JdbcProbe — a PgJDBC session for pgfold's integration tests
// (tests/integration/test_jdbc.py).  Usage: java -cp postgresql.jar:. JdbcProbe HOST PORT
// Uses PreparedStatement with prepareThreshold=2 so the driver switches to
// named server-side statements, plus a batch, a transaction rolled back, an
// error with its SQLState and a fetch-size cursor.  Prints "key=value" lines
// that the test checks and compares between direct and pgfold.

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Properties;

public class JdbcProbe {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/shop";
        Properties props = new Properties();
        props.setProperty("user", "app");
        props.setProperty("prepareThreshold", "2");
        props.setProperty("connectTimeout", "10");
        props.setProperty("socketTimeout", "60");
        props.setProperty("ApplicationName", "pgfold-jdbc-probe");
        try (Connection conn = DriverManager.getConnection(url, props)) {
            run(conn);
        }
    }

    static void run(Connection conn) throws SQLException {
        try (Statement st = conn.createStatement()) {
            st.execute("CREATE TEMP TABLE jt (id int PRIMARY KEY, name text, qty int)");
        }

        // server-side prepared statement after prepareThreshold executions
        StringBuilder squares = new StringBuilder();
        boolean serverPrepared = false;
        try (PreparedStatement ps = conn.prepareStatement("SELECT ?::int * ?::int")) {
            for (int i = 1; i <= 6; i++) {
                ps.setInt(1, i);
                ps.setInt(2, i);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    squares.append(rs.getInt(1)).append(i < 6 ? "," : "");
                }
            }
            serverPrepared = ps.unwrap(org.postgresql.PGStatement.class).isUseServerPrepare();
        }
        System.out.println("squares=" + squares);
        System.out.println("server_prepare=" + serverPrepared);
        try (Statement st = conn.createStatement();
             ResultSet rs = st.executeQuery("SELECT count(*) FROM pg_prepared_statements "
                                            + "WHERE statement LIKE 'SELECT $1::int * $2::int%'")) {
            rs.next();
            System.out.println("named_statements_on_server=" + rs.getInt(1));
        }

        // batch insert inside a committed transaction
        conn.setAutoCommit(false);
        try (PreparedStatement ins = conn.prepareStatement("INSERT INTO jt VALUES (?, ?, ?)")) {
            for (int i = 1; i <= 50; i++) {
                ins.setInt(1, i);
                ins.setString(2, "item-" + i);
                ins.setInt(3, i * 10);
                ins.addBatch();
            }
            int[] counts = ins.executeBatch();
            System.out.println("batch_rows=" + counts.length);
        }
        conn.commit();

        // a transaction rolled back
        try (Statement st = conn.createStatement()) {
            st.executeUpdate("DELETE FROM jt WHERE id <= 25");
        }
        conn.rollback();

        // an error with its SQLState; the transaction is then aborted
        try (PreparedStatement dup = conn.prepareStatement("INSERT INTO jt VALUES (?, 'dup', 0)")) {
            dup.setInt(1, 1);
            dup.executeUpdate();
            System.out.println("error=none");
        } catch (SQLException e) {
            System.out.println("error=" + e.getSQLState() + " " + e.getMessage().split("\n")[0]);
        }
        conn.rollback();

        // fetch-size cursor (portal with row limit) over the rows
        try (PreparedStatement q = conn.prepareStatement("SELECT id, name, qty FROM jt WHERE qty >= ? ORDER BY id")) {
            q.setFetchSize(7);
            q.setInt(1, 0);
            long sum = 0;
            int n = 0;
            String last = "";
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    n++;
                    sum += rs.getInt(3);
                    last = rs.getString(2);
                }
            }
            System.out.println("rows=" + n + " qty_sum=" + sum + " last=" + last);
        }
        conn.commit();
        conn.setAutoCommit(true);

        try (Statement st = conn.createStatement();
             ResultSet rs = st.executeQuery("SELECT current_user, current_database(), "
                                            + "current_setting('application_name')")) {
            rs.next();
            System.out.println("session=" + rs.getString(1) + "/" + rs.getString(2) + "/" + rs.getString(3));
        }
    }
}
